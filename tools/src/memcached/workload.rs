//! The Facebook memcached workloads of IX §5.5, as mutilate defines them (Atikoglu et al., SIGMETRICS'12).
//!
//! - **ETC**: key sizes GEV(30.7984, 8.20449, 0.078688) (mutilate's `fb_key`); value sizes a discrete head over
//!   0..=14 bytes, else generalized Pareto(15, 214.476, 0.348238) (mutilate's `fb_value`); 75% GET.
//! - **USR**: keys shorter than 20 bytes, fixed at 19 (mutilate `--keysize=fixed:19`: the paper only says
//!   "<20B"; a fixed size keeps every request the same minimum-sized TCP segment), 2-byte values, 99% GET.
//!
//! As in mutilate's key generator, the size of key `i` is a function of `i` (the inverse CDF of a hash of `i`),
//! and the key is `i` in decimal, zero-padded to that size: a key always has the same bytes. Sizes are truncated
//! to integers as mutilate does, keys clamped to memcached's 1..=250 bytes and values to [`MAX_VALUE`].

use clap::ValueEnum;

/// memcached's longest key.
pub const MAX_KEY: usize = 250;
/// Longest value sent (the GPareto tail is unbounded; P(size > 1 MB) is about 1e-8). Fits memcached's default
/// 1 MiB item limit with the key and the item header.
pub const MAX_VALUE: usize = 1_000_000;

/// GEV parameters of ETC's key sizes: location, scale, shape.
pub const ETC_KEY_GEV: (f64, f64, f64) = (30.7984, 8.20449, 0.078688);
/// Generalized Pareto parameters of ETC's value sizes (beyond the discrete head): location, scale, shape.
pub const ETC_VALUE_GPARETO: (f64, f64, f64) = (15.0, 214.476, 0.348238);
/// P(value size = i bytes) for i in 0..=14 (ETC); the rest of the mass goes to the generalized Pareto.
pub const ETC_VALUE_HEAD: [f64; 15] = [
    0.00536, 0.00047, 0.17820, 0.09239, 0.00018, 0.02740, 0.00065, 0.00606, 0.00023, 0.00837, 0.00837, 0.08989,
    0.00092, 0.00326, 0.01980,
];
/// USR's fixed key and value sizes.
pub const USR_KEY_SIZE: usize = 19;
pub const USR_VALUE_SIZE: usize = 2;

/// Inverse CDF of the generalized extreme value distribution (shape != 0), for u in (0, 1).
pub fn gev_quantile(u: f64, loc: f64, scale: f64, shape: f64) -> f64 {
    loc + scale * ((-u.ln()).powf(-shape) - 1.0) / shape
}

/// Inverse CDF of the generalized Pareto distribution (shape != 0), for u in [0, 1).
pub fn gpareto_quantile(u: f64, loc: f64, scale: f64, shape: f64) -> f64 {
    loc + scale * ((1.0 - u).powf(-shape) - 1.0) / shape
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
pub enum Workload {
    /// Facebook ETC: 20-70 B keys (GEV), 1 B-1 KB values (discrete head + GPareto), 75% GET.
    Etc,
    /// Facebook USR: 19 B keys, 2 B values, 99% GET.
    Usr,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Etc => "etc",
            Workload::Usr => "usr",
        }
    }

    /// Share of requests that are GETs (the others are SETs).
    pub fn get_fraction(self) -> f64 {
        match self {
            Workload::Etc => 0.75,
            Workload::Usr => 0.99,
        }
    }

    /// Key size for the uniform variate `u` in (0, 1).
    pub fn key_size(self, u: f64) -> usize {
        match self {
            Workload::Etc => {
                let (loc, scale, shape) = ETC_KEY_GEV;
                truncate(gev_quantile(u, loc, scale, shape), 1, MAX_KEY)
            }
            Workload::Usr => USR_KEY_SIZE,
        }
    }

    /// Value size for the uniform variate `u` in [0, 1).
    pub fn value_size(self, u: f64) -> usize {
        match self {
            Workload::Etc => {
                let mut acc = 0.0;
                for (size, p) in ETC_VALUE_HEAD.iter().enumerate() {
                    acc += p;
                    if u < acc {
                        return size;
                    }
                }
                // The tail: u rescaled to [0, 1) over the mass left.
                let tail_u = (u - acc) / (1.0 - acc);
                let (loc, scale, shape) = ETC_VALUE_GPARETO;
                truncate(gpareto_quantile(tail_u, loc, scale, shape), 0, MAX_VALUE)
            }
            Workload::Usr => USR_VALUE_SIZE,
        }
    }
}

fn truncate(x: f64, lo: usize, hi: usize) -> usize {
    if x.is_nan() {
        return lo;
    }
    (x.max(lo as f64).min(hi as f64)) as usize
}

/// FNV-1a over the index's little-endian bytes: which uniform variate decides key `i`'s size.
pub fn key_hash(i: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in i.to_le_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A u64 mapped into the open interval (0, 1).
pub fn unit_open(x: u64) -> f64 {
    ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// All keys of the key space, in one arena (built once, before any load).
pub struct KeySpace {
    arena: Vec<u8>,
    /// Start of key i in `arena`; `n + 1` entries.
    starts: Vec<u32>,
}

impl KeySpace {
    pub fn new(workload: Workload, n: usize) -> KeySpace {
        use std::io::Write;
        let mut arena = Vec::with_capacity(n * 32);
        let mut starts = Vec::with_capacity(n + 1);
        for i in 0..n as u64 {
            starts.push(arena.len() as u32);
            let size = workload.key_size(unit_open(key_hash(i)));
            // Zero-padded to `size`; a size shorter than the index's digits gives the plain digits.
            write!(arena, "{i:0size$}").expect("writing to a Vec");
        }
        starts.push(arena.len() as u32);
        KeySpace { arena, starts }
    }

    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn key(&self, i: usize) -> &[u8] {
        &self.arena[self.starts[i] as usize..self.starts[i + 1] as usize]
    }
}

/// Shift between the values of two consecutive keys (a prime: key i's value starts at i mod this).
const VALUE_SHIFT: usize = 251;

/// The bytes every value is cut from: key i's value of size n is `bytes[i % 251..][..n]`, so a value returned
/// for the wrong key (or cut in the wrong place) does not compare equal, whatever size the last SET chose.
pub struct ValuePattern {
    bytes: Vec<u8>,
}

impl Default for ValuePattern {
    fn default() -> Self {
        Self::new()
    }
}

impl ValuePattern {
    pub fn new() -> ValuePattern {
        let mut x: u32 = 0x9E37_79B9;
        let bytes = (0..MAX_VALUE + VALUE_SHIFT)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                b'a' + (x % 26) as u8
            })
            .collect();
        ValuePattern { bytes }
    }

    pub fn value(&self, key_index: usize, size: usize) -> &[u8] {
        let start = key_index % VALUE_SHIFT;
        &self.bytes[start..start + size]
    }
}

/// xorshift64*: key choice, GET/SET choice, value sizes and Poisson gaps.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in (0, 1).
    pub fn next_f64(&mut self) -> f64 {
        unit_open(self.next_u64())
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    /// Exponential with the given mean.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * self.next_f64().ln()
    }
}
