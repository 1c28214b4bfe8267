//! The `bpf(2)` syscall, only as much of it as an AF_XDP redirect needs: an XSKMAP, a hand-assembled XDP program,
//! and a bpf_link that attaches it to an interface.
//!
//! No libbpf, no clang, no ELF: the program is six instruction slots built by [`xsk_redirect_program`]. Every
//! kernel object comes back as an [`OwnedFd`]; closing the link fd detaches the program, and the kernel closes it
//! for us when the process dies (even on SIGKILL), so a crash never leaves the interface redirecting into nothing.
//!
//! Layouts follow `union bpf_attr` in `include/uapi/linux/bpf.h`. Each command gets its own `#[repr(C)]` prefix of
//! the union, zeroed in full, and the size passed to the kernel is the size of that prefix: the kernel zero-extends
//! a short attribute and rejects non-zero bytes it does not know, so a prefix is exactly as good as the full union.
use std::ffi::CStr;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::syscall;

/// `BPF_MAP_CREATE` command.
pub const BPF_MAP_CREATE: libc::c_int = 0;
/// `BPF_MAP_UPDATE_ELEM` command.
pub const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
/// `BPF_MAP_DELETE_ELEM` command.
pub const BPF_MAP_DELETE_ELEM: libc::c_int = 3;
/// `BPF_PROG_LOAD` command.
pub const BPF_PROG_LOAD: libc::c_int = 5;
/// `BPF_LINK_CREATE` command.
pub const BPF_LINK_CREATE: libc::c_int = 28;

/// `BPF_MAP_TYPE_XSKMAP`: an array of AF_XDP sockets indexed by queue id.
pub const BPF_MAP_TYPE_XSKMAP: u32 = 17;
/// `BPF_PROG_TYPE_XDP`.
pub const BPF_PROG_TYPE_XDP: u32 = 6;
/// `BPF_XDP` attach type (expected attach type at load, attach type at link creation).
pub const BPF_XDP: u32 = 37;
/// `BPF_ANY`: create or update a map element.
pub const BPF_ANY: u64 = 0;
/// `BPF_PSEUDO_MAP_FD`: the `src_reg` of an `ld_imm64` whose immediate is a map fd.
pub const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `BPF_OBJ_NAME_LEN`: bytes in a map or program name, NUL included.
pub const BPF_OBJ_NAME_LEN: usize = 16;

/// `XDP_FLAGS_UPDATE_IF_NOEXIST` (netlink attach only; links never replace).
pub const XDP_FLAGS_UPDATE_IF_NOEXIST: u32 = 1 << 0;
/// `XDP_FLAGS_SKB_MODE`: generic XDP, run on the skb after the driver (works on any interface).
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: native XDP, run by the driver before an skb exists.
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `XDP_FLAGS_HW_MODE`: offloaded to the NIC.
pub const XDP_FLAGS_HW_MODE: u32 = 1 << 3;

/// XDP verdict `XDP_ABORTED`.
pub const XDP_ABORTED: i32 = 0;
/// XDP verdict `XDP_DROP`.
pub const XDP_DROP: i32 = 1;
/// XDP verdict `XDP_PASS`: hand the frame to the kernel stack.
pub const XDP_PASS: i32 = 2;
/// XDP verdict `XDP_TX`.
pub const XDP_TX: i32 = 3;
/// XDP verdict `XDP_REDIRECT`.
pub const XDP_REDIRECT: i32 = 4;

/// Helper id of `bpf_redirect_map(map, key, flags)`.
pub const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// Offset of `rx_queue_index` in `struct xdp_md` (data, data_end, data_meta, ingress_ifindex come first).
pub const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

// Opcode pieces (include/uapi/linux/bpf_common.h and bpf.h).
const BPF_LD: u8 = 0x00;
const BPF_LDX: u8 = 0x01;
const BPF_JMP: u8 = 0x05;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_DW: u8 = 0x18;
const BPF_IMM: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_MOV: u8 = 0xb0;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;

/// One eBPF instruction, `struct bpf_insn`: opcode, `dst_reg:4 | src_reg:4` (dst in the low nibble on
/// little-endian), 16-bit offset, 32-bit immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BpfInsn {
    /// Opcode.
    pub code: u8,
    /// Destination register (low nibble) and source register (high nibble).
    pub regs: u8,
    /// Signed offset.
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}
const _: () = assert!(std::mem::size_of::<BpfInsn>() == 8);

impl BpfInsn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
        BpfInsn { code, regs: (dst & 0x0f) | ((src & 0x0f) << 4), off, imm }
    }

    /// `dst = *(u32 *)(src + off)`.
    pub const fn ldx_w(dst: u8, src: u8, off: i16) -> BpfInsn {
        BpfInsn::new(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
    }

    /// `dst = imm` (64-bit move of a sign-extended 32-bit immediate).
    pub const fn mov64_imm(dst: u8, imm: i32) -> BpfInsn {
        BpfInsn::new(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)
    }

    /// `dst = map` as the two-slot `ld_imm64` with `src_reg = BPF_PSEUDO_MAP_FD`; the verifier swaps the fd for
    /// the map's address.
    pub const fn ld_map_fd(dst: u8, map_fd: i32) -> [BpfInsn; 2] {
        [BpfInsn::new(BPF_LD | BPF_DW | BPF_IMM, dst, BPF_PSEUDO_MAP_FD, 0, map_fd), BpfInsn::new(0, 0, 0, 0, 0)]
    }

    /// `call helper`.
    pub const fn call(helper: i32) -> BpfInsn {
        BpfInsn::new(BPF_JMP | BPF_CALL, 0, 0, 0, helper)
    }

    /// `exit` (returns `r0`).
    pub const fn exit() -> BpfInsn {
        BpfInsn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
    }
}

/// The whole XDP program: `return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);`
///
/// Frames of a queue with a socket in the map go to that socket; frames of any other queue go to the kernel
/// stack (the low bits of the flags argument are the verdict when the lookup misses).
pub fn xsk_redirect_program(xskmap_fd: BorrowedFd<'_>) -> [BpfInsn; 6] {
    let [ld_lo, ld_hi] = BpfInsn::ld_map_fd(1, xskmap_fd.as_raw_fd());
    [
        BpfInsn::ldx_w(2, 1, XDP_MD_RX_QUEUE_INDEX), // r2 = ctx->rx_queue_index
        ld_lo,                                       // r1 = &xsks (two slots)
        ld_hi,
        BpfInsn::mov64_imm(3, XDP_PASS), // r3 = XDP_PASS
        BpfInsn::call(BPF_FUNC_REDIRECT_MAP),
        BpfInsn::exit(),
    ]
}

/// `union bpf_attr` prefix used by `BPF_MAP_CREATE` (up to `map_name`).
#[repr(C)]
#[derive(Debug, Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; BPF_OBJ_NAME_LEN],
}
const _: () = assert!(std::mem::size_of::<MapCreateAttr>() == 44);

/// `union bpf_attr` prefix used by the `BPF_MAP_*_ELEM` commands.
#[repr(C)]
#[derive(Debug, Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}
const _: () = assert!(std::mem::size_of::<MapElemAttr>() == 32);

/// `union bpf_attr` prefix used by `BPF_PROG_LOAD` (up to `expected_attach_type`).
#[repr(C)]
#[derive(Debug, Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; BPF_OBJ_NAME_LEN],
    prog_ifindex: u32,
    expected_attach_type: u32,
}
const _: () = assert!(std::mem::size_of::<ProgLoadAttr>() == 72);

/// `union bpf_attr` prefix used by `BPF_LINK_CREATE` (no target-specific tail for XDP).
#[repr(C)]
#[derive(Debug, Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}
const _: () = assert!(std::mem::size_of::<LinkCreateAttr>() == 16);

/// Issues `bpf(cmd, attr, sizeof *attr)`.
///
/// # Safety
/// `T` must be the `bpf_attr` prefix that `cmd` reads, and every pointer stored in it must be valid for the
/// kernel to read (or write, for log buffers) for the duration of the call.
unsafe fn sys_bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    syscall!(syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>() as libc::c_uint))
}

/// Wraps an fd returned by a successful `bpf(2)` call.
fn owned(fd: libc::c_long) -> io::Result<OwnedFd> {
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("bpf(2) returned an out-of-range fd"))?;
    // SAFETY: the kernel just created `fd` for us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn obj_name(name: &str) -> [u8; BPF_OBJ_NAME_LEN] {
    // The kernel accepts [A-Za-z0-9_.] and needs a NUL inside the 16 bytes; anything else becomes '_'.
    let mut out = [0u8; BPF_OBJ_NAME_LEN];
    for (dst, b) in out.iter_mut().take(BPF_OBJ_NAME_LEN - 1).zip(name.bytes()) {
        *dst = if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' { b } else { b'_' };
    }
    out
}

/// Creates an XSKMAP with `max_entries` slots (one per queue id), keys and values both `u32`.
pub fn create_xskmap(name: &str, max_entries: u32) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_XSKMAP,
        key_size: 4,
        value_size: 4,
        max_entries,
        map_name: obj_name(name),
        ..MapCreateAttr::default()
    };
    // SAFETY: `attr` is the BPF_MAP_CREATE prefix and holds no pointers.
    owned(unsafe { sys_bpf(BPF_MAP_CREATE, &mut attr) }?)
}

/// Sets `map[key] = value` for a map with `u32` keys and values (for an XSKMAP, `value` is the XSK fd).
pub fn map_update_u32(map: BorrowedFd<'_>, key: u32, value: u32) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        flags: BPF_ANY,
        ..MapElemAttr::default()
    };
    // SAFETY: `attr` is the BPF_MAP_UPDATE_ELEM prefix; `key` and `value` are live u32s matching the map's sizes.
    unsafe { sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(drop)
}

/// Deletes `map[key]` from a map with `u32` keys.
pub fn map_delete_u32(map: BorrowedFd<'_>, key: u32) -> io::Result<()> {
    let mut attr =
        MapElemAttr { map_fd: map.as_raw_fd() as u32, key: &key as *const u32 as u64, ..MapElemAttr::default() };
    // SAFETY: `attr` is the BPF_MAP_DELETE_ELEM prefix; `key` is a live u32 matching the map's key size.
    unsafe { sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr) }.map(drop)
}

/// A failed `BPF_PROG_LOAD`: the errno and what the verifier said about the program.
#[derive(Debug)]
pub struct ProgLoadError {
    /// The errno of the load.
    pub errno: io::Error,
    /// The verifier log (empty when the kernel gave none, e.g. on EPERM).
    pub log: String,
}

impl fmt::Display for ProgLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BPF_PROG_LOAD failed: {}", self.errno)?;
        if !self.log.trim().is_empty() {
            write!(f, "; verifier log:\n{}", self.log.trim_end())?;
        }
        Ok(())
    }
}

impl std::error::Error for ProgLoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.errno)
    }
}

/// Bytes of verifier log captured when a load fails.
const VERIFIER_LOG_SIZE: usize = 64 * 1024;

/// Loads an XDP program (expected attach type `BPF_XDP`) and returns its fd.
///
/// The first attempt runs without a log; when it fails, the load is repeated with `log_level = 1` and the
/// verifier's explanation comes back inside the error as a [`ProgLoadError`] (`io::Error::get_ref` /
/// `into_inner`), with the error's kind taken from the errno.
pub fn load_xdp_program(name: &str, insns: &[BpfInsn], license: &CStr) -> io::Result<OwnedFd> {
    let insn_cnt = u32::try_from(insns.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: obj_name(name),
        expected_attach_type: BPF_XDP,
        ..ProgLoadAttr::default()
    };
    // SAFETY: `attr` is the BPF_PROG_LOAD prefix; `insns` and `license` outlive the call; no log buffer is set.
    let first = match unsafe { sys_bpf(BPF_PROG_LOAD, &mut attr) } {
        Ok(fd) => return owned(fd),
        Err(e) => e,
    };
    if first.raw_os_error() == Some(libc::EPERM) {
        // No verifier ran; a log would be empty.
        return Err(io::Error::new(first.kind(), ProgLoadError { errno: first, log: String::new() }));
    }
    let mut log = vec![0u8; VERIFIER_LOG_SIZE];
    attr.log_level = 1;
    attr.log_size = log.len() as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    // SAFETY: as above; `log` is writable for `log_size` bytes and outlives the call.
    let errno = match unsafe { sys_bpf(BPF_PROG_LOAD, &mut attr) } {
        Ok(fd) => {
            log::debug!("XDP program {name} loaded on the second try (first: {first})");
            return owned(fd);
        }
        Err(e) => e,
    };
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let log = String::from_utf8_lossy(&log[..end]).into_owned();
    Err(io::Error::new(errno.kind(), ProgLoadError { errno, log }))
}

/// Attaches an XDP program to interface `ifindex` through a bpf_link; `flags` is one of
/// [`XDP_FLAGS_DRV_MODE`] or [`XDP_FLAGS_SKB_MODE`] (0 lets the kernel choose).
///
/// The program stays attached exactly as long as the returned fd is open (in this or any process it is passed
/// to). Errors worth knowing: `EBUSY` (another program or link is attached in this mode), `EEXIST` (one is
/// attached in the other mode), `EOPNOTSUPP` (no native XDP in the driver), and veth's `ENOSPC` (fewer RX queues
/// than its peer has TX queues).
pub fn link_create_xdp(prog: BorrowedFd<'_>, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut attr =
        LinkCreateAttr { prog_fd: prog.as_raw_fd() as u32, target_ifindex: ifindex, attach_type: BPF_XDP, flags };
    // SAFETY: `attr` is the BPF_LINK_CREATE prefix for an XDP link and holds no pointers.
    owned(unsafe { sys_bpf(BPF_LINK_CREATE, &mut attr) }?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(insns: &[BpfInsn]) -> Vec<u8> {
        insns
            .iter()
            .flat_map(|i| {
                let mut b = vec![i.code, i.regs];
                b.extend_from_slice(&i.off.to_le_bytes());
                b.extend_from_slice(&i.imm.to_le_bytes());
                b
            })
            .collect()
    }

    #[test]
    fn redirect_program_encodes_like_the_assembler() {
        // Only the fd's number goes into the program, so any open fd will do: stdin (0).
        // SAFETY: fd 0 is open for the life of the test process and only its number is read.
        let fd = unsafe { BorrowedFd::borrow_raw(0) };
        let prog = xsk_redirect_program(fd);
        // What `llvm-objdump -d` shows for the C version of this program (with map fd 0).
        let expected: [u8; 48] = [
            0x61, 0x12, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, // r2 = *(u32 *)(r1 + 16)
            0x18, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // r1 = map fd 0 (pseudo map fd)
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //    (second half of ld_imm64)
            0xb7, 0x03, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, // r3 = 2
            0x85, 0x00, 0x00, 0x00, 0x33, 0x00, 0x00, 0x00, // call 51
            0x95, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // exit
        ];
        assert_eq!(bytes(&prog), expected);
    }

    #[test]
    fn object_names_are_sanitised_and_terminated() {
        assert_eq!(&obj_name("ix_xsk")[..7], b"ix_xsk\0");
        let long = obj_name("a-very-long-name-indeed");
        assert_eq!(long[15], 0);
        assert_eq!(&long[..6], b"a_very");
    }
}
