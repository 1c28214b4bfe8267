//! An evbuffer's callbacks: the list (newest first, as libevent's `LIST_INSERT_HEAD` keeps it), their flags, and
//! the decision libevent's `evbuffer_run_callbacks` makes: which entries run now and what they are told.
//!
//! Generic over the callback value `F` (the C shell stores C function pointers and arguments), so this logic is
//! testable without C. Entries are boxed: their addresses are the handles C holds (`struct evbuffer_cb_entry *`).

use super::Buffer;

/// `EVBUFFER_CB_ENABLED`.
pub const CB_ENABLED: u32 = 1;
/// `EVBUFFER_CB_NODEFER`: run at once even when the buffer defers callbacks.
pub const CB_NODEFER: u32 = 2;
/// Flags the application may not set or clear (libevent's `EVBUFFER_CB_INTERNAL_FLAGS`).
const INTERNAL_FLAGS: u32 = 0xffff_0000;

/// `struct evbuffer_cb_info`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Info {
    /// Length before the changes being reported.
    pub orig_size: usize,
    /// Bytes added.
    pub n_added: usize,
    /// Bytes removed.
    pub n_deleted: usize,
}

/// One registered callback.
#[derive(Debug)]
pub struct Entry<F> {
    /// The callback.
    pub cb: F,
    flags: u32,
}

impl<F> Entry<F> {
    /// Its flags.
    pub fn flags(&self) -> u32 {
        self.flags
    }
}

/// What to tell and whom (entry handle and value, in list order).
pub type Due<F> = (Info, Vec<(*const Entry<F>, F)>);

/// When callbacks are being run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Right after a change, in a buffer that does not defer.
    Immediate,
    /// Right after a change, in a buffer that defers: only NODEFER entries run, counters are kept for later.
    ImmediateDeferring,
    /// From the event loop, for a deferring buffer: the entries without NODEFER.
    Deferred,
}

/// The callback list.
#[derive(Debug)]
pub struct Callbacks<F> {
    entries: Vec<Box<Entry<F>>>,
}

impl<F> Default for Callbacks<F> {
    fn default() -> Self {
        Callbacks { entries: Vec::new() }
    }
}

impl<F: Copy> Callbacks<F> {
    /// Whether none is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `evbuffer_add_cb`: registers an enabled entry ahead of the others; returns its handle.
    pub fn add(&mut self, cb: F) -> *const Entry<F> {
        let e = Box::new(Entry { cb, flags: CB_ENABLED });
        let handle: *const Entry<F> = &*e;
        self.entries.insert(0, e);
        handle
    }

    fn index_of(&self, handle: *const Entry<F>) -> Option<usize> {
        self.entries.iter().position(|e| std::ptr::eq(&**e, handle))
    }

    /// Whether `handle` is registered.
    pub fn contains(&self, handle: *const Entry<F>) -> bool {
        self.index_of(handle).is_some()
    }

    /// `evbuffer_remove_cb_entry`.
    pub fn remove(&mut self, handle: *const Entry<F>) -> bool {
        self.index_of(handle).map(|i| self.entries.remove(i)).is_some()
    }

    /// `evbuffer_remove_cb`: removes the first (newest) entry `matches` accepts.
    pub fn remove_first(&mut self, matches: impl Fn(&F) -> bool) -> bool {
        self.entries.iter().position(|e| matches(&e.cb)).map(|i| self.entries.remove(i)).is_some()
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// `evbuffer_cb_set_flags` (`set`) / `evbuffer_cb_clear_flags`: internal bits are left alone.
    pub fn change_flags(&mut self, handle: *const Entry<F>, flags: u32, set: bool) -> bool {
        let Some(i) = self.index_of(handle) else { return false };
        let flags = flags & !INTERNAL_FLAGS;
        let e = &mut self.entries[i];
        if set {
            e.flags |= flags;
        } else {
            e.flags &= !flags;
        }
        true
    }

    /// The flags of `handle` now (None once removed).
    pub fn flags_of(&self, handle: *const Entry<F>) -> Option<u32> {
        self.index_of(handle).map(|i| self.entries[i].flags)
    }

    /// What libevent's `evbuffer_run_callbacks` would run now: the information and, in list order, the entries
    /// (handle and value) whose flags select them in `phase`. Resets the buffer's counters unless they must wait
    /// for the deferred run. None when there is nothing to tell.
    pub fn due(&self, buf: &mut Buffer, phase: Phase) -> Option<Due<F>> {
        if self.entries.is_empty() {
            buf.n_added = 0;
            buf.n_deleted = 0;
            return None;
        }
        if buf.n_added == 0 && buf.n_deleted == 0 {
            return None;
        }
        let info =
            Info { orig_size: buf.len() + buf.n_deleted - buf.n_added, n_added: buf.n_added, n_deleted: buf.n_deleted };
        if phase != Phase::ImmediateDeferring {
            buf.n_added = 0;
            buf.n_deleted = 0;
        }
        let due = self
            .entries
            .iter()
            .filter(|e| Self::selected(e.flags, phase))
            .map(|e| (&**e as *const Entry<F>, e.cb))
            .collect();
        Some((info, due))
    }

    /// Whether an entry with `flags` runs in `phase` (checked again just before each call, as libevent does).
    pub fn selected(flags: u32, phase: Phase) -> bool {
        match phase {
            Phase::Immediate => flags & CB_ENABLED != 0,
            Phase::ImmediateDeferring => flags & (CB_ENABLED | CB_NODEFER) == CB_ENABLED | CB_NODEFER,
            Phase::Deferred => flags & (CB_ENABLED | CB_NODEFER) == CB_ENABLED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_with_libevents_counts() {
        let mut cbs: Callbacks<u32> = Callbacks::default();
        let a = cbs.add(1);
        let _b = cbs.add(2);
        let mut buf = Buffer::new();
        buf.add(b"hello").expect("add");
        buf.drain(2).expect("drain");
        let (info, due) = cbs.due(&mut buf, Phase::Immediate).expect("something to tell");
        assert_eq!(info, Info { orig_size: 0, n_added: 5, n_deleted: 2 });
        assert_eq!(due.iter().map(|d| d.1).collect::<Vec<_>>(), vec![2, 1]);
        assert!(cbs.due(&mut buf, Phase::Immediate).is_none(), "counters were reset");
        cbs.change_flags(a, CB_ENABLED, false);
        buf.add(b"x").expect("add");
        let (info, due) = cbs.due(&mut buf, Phase::Immediate).expect("due");
        assert_eq!(info.orig_size, 3);
        assert_eq!(due.iter().map(|d| d.1).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn deferring_buffers_keep_counts_for_the_deferred_run() {
        let mut cbs: Callbacks<u32> = Callbacks::default();
        let a = cbs.add(1);
        cbs.add(2);
        cbs.change_flags(a, CB_NODEFER, true);
        let mut buf = Buffer::new();
        buf.add(b"abc").expect("add");
        let (_, now) = cbs.due(&mut buf, Phase::ImmediateDeferring).expect("due");
        assert_eq!(now.iter().map(|d| d.1).collect::<Vec<_>>(), vec![1]);
        let (info, later) = cbs.due(&mut buf, Phase::Deferred).expect("due");
        assert_eq!(info.n_added, 3);
        assert_eq!(later.iter().map(|d| d.1).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn no_callbacks_means_counters_are_dropped() {
        let cbs: Callbacks<u32> = Callbacks::default();
        let mut buf = Buffer::new();
        buf.add(b"abc").expect("add");
        assert!(cbs.due(&mut buf, Phase::Immediate).is_none());
        assert_eq!((buf.n_added, buf.n_deleted), (0, 0));
    }
}
