//! Text-to-pattern distances at the sizes where the code changes shape, against a direct count,
//! under thread pools of several sizes.
//!
//! Where the shape changes (src/text):
//! * FFT blocks: the length `L` is a power of two at least 2m, at least 64 and at most
//!   `n.next_power_of_two()`; a block yields `L - m + 1` windows; the blocks are cut into
//!   `4 x threads` tasks; pattern spectra are batched past 256 MiB; patterns of one length share
//!   the blocks' transforms unless their letters together pass that budget.
//! * naive: 4096 windows per task; u8 symbols below 254 pattern letters, u16 below 65534, else
//!   u32; u8 counters flushed every 255 pattern positions, four positions per pass.
//! * Abrahamson: 32768 windows per scan task; letters split between FFT and scan by a cost
//!   model, with at least two FFT letters or none.
//! * kangaroo: 4096 windows per task; range minima over blocks of 32 LCP entries.
//! * dense codes: symbols below max(2^16, 2n) are their own codes, larger ones are hashed.
//! * approx: ceil(4 / eps) colours, exact once they cover the code range.

use proptest::prelude::*;
use thrifty_hamming::text::{text_to_pattern, text_to_patterns, Method};

mod common;
mod pools;

use common::{capped, options, reference};
use pools::{pool, THREADS};

/// The longest text of the main property; longer ones only where a boundary needs them.
const MAX_N: usize = 10_000;

/// FFT points (letters x blocks x block length) a case may spend on one method call; more
/// would only test patience, and the naive count checks those sizes.
const FFT_WORK: usize = 20_000_000;

/// Kangaroo LCE queries (windows x (k + 1)) a case may spend.
const KANGAROO_WORK: usize = 3_000_000;

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn hash(seed: u64, i: usize) -> u64 {
    splitmix64(seed ^ splitmix64(i as u64))
}

/// The FFT block length for a text of `n` and a pattern of `m`, as documented in src/text.
fn block_len(n: usize, m: usize) -> usize {
    (2 * m)
        .next_power_of_two()
        .max(64)
        .min(n.next_power_of_two())
}

fn fft_work(n: usize, pattern: &[u32]) -> usize {
    let m = pattern.len();
    let l = block_len(n, m);
    let blocks = (n - m + 1).div_ceil(l - m + 1);
    let mut letters = pattern.to_vec();
    letters.sort_unstable();
    letters.dedup();
    (letters.len() + 2) * (blocks + 1) * l
}

/// The range of dense codes (symbols are their own codes below max(2^16, 2n), else each
/// distinct symbol gets one), around which the colour counts are drawn.
fn code_range(text: &[u32]) -> usize {
    let largest = text.iter().copied().max().unwrap_or(0) as usize;
    if largest < (1usize << 16).max(2 * text.len()) {
        return largest + 1;
    }
    let mut distinct = text.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    distinct.len()
}

/// Whether `colours` reach the text's code range whichever way its symbols are coded: past
/// the largest symbol, or past the distinct symbols when the largest is far too large to be
/// its own code.
fn colours_cover_the_codes(text: &[u32], colours: usize) -> bool {
    let largest = text.iter().copied().max().unwrap_or(0) as usize;
    let mut distinct = text.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    colours > largest || (largest >= 1 << 31 && colours >= distinct.len())
}

/// The symbols of a text.
#[derive(Debug, Clone, Copy)]
enum Alphabet {
    /// One letter: every window matches everywhere, the counters' worst case.
    Constant,
    /// Letters `0..q`, equally likely: q around 254 crosses the naive kernel's u8/u16 switch.
    Uniform(u32),
    /// Letter j with probability 2^-(j + 1), and one symbol in eight from 1000 rare ones:
    /// Abrahamson's cost model sends the frequent letters to the FFT and the rare to the scan.
    Skewed,
    /// `letters` symbols ending at `top` (which occurs): around 2^16 and 2n the text switches
    /// between identity and hashed codes; u32::MAX is the largest symbol there is.
    Top { top: u32, letters: u32 },
}

impl Alphabet {
    fn symbol(self, z: u64) -> u32 {
        match self {
            Alphabet::Constant => 7,
            Alphabet::Uniform(q) => (z % u64::from(q)) as u32,
            Alphabet::Skewed if z & 7 == 0 => 64 + ((z >> 3) % 1000) as u32,
            Alphabet::Skewed => (z >> 3).trailing_zeros().min(40),
            Alphabet::Top { top, letters } => top.saturating_sub((z % u64::from(letters)) as u32),
        }
    }

    fn text(self, n: usize, seed: u64) -> Vec<u32> {
        let mut text: Vec<u32> = (0..n).map(|i| self.symbol(hash(seed, i))).collect();
        if let Alphabet::Top { top, .. } = self {
            text[(seed % n as u64) as usize] = top;
        }
        text
    }
}

/// Symbols of the text's kind that the text lacks: they can match nothing.
fn absent_symbol(text: &[u32], z: u64) -> u32 {
    [u32::MAX - 1, 1 << 20, 999, 5]
        .into_iter()
        .chain((0..).map(|i| splitmix64(z ^ i) as u32))
        .find(|s| !text.contains(s))
        .expect("a text lacks most symbols")
}

/// Where a pattern comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// A window of the text with one position in `one_in` replaced (never when 0), half by a
    /// letter of the alphabet and half by a symbol the text lacks: distances near 0 and long
    /// common extensions for kangaroo.
    Window { one_in: u64 },
    /// Letters of the alphabet, one in eight absent from the text.
    Random,
}

fn make_pattern(text: &[u32], m: usize, alphabet: Alphabet, source: Source, seed: u64) -> Vec<u32> {
    let n = text.len();
    let z = splitmix64(!seed);
    let absent = absent_symbol(text, z);
    match source {
        Source::Window { one_in } => {
            let at = (z % (n - m + 1) as u64) as usize;
            let mut pattern = text[at..at + m].to_vec();
            if one_in > 0 {
                for (j, p) in pattern.iter_mut().enumerate() {
                    let y = hash(z, j);
                    if y.is_multiple_of(one_in) {
                        *p = if y & (1 << 40) == 0 {
                            alphabet.symbol(y >> 1)
                        } else {
                            absent
                        };
                    }
                }
            }
            pattern
        }
        Source::Random => (0..m)
            .map(|j| {
                let y = hash(z ^ 1, j);
                if y.is_multiple_of(8) {
                    absent
                } else {
                    alphabet.symbol(y >> 3)
                }
            })
            .collect(),
    }
}

/// `around(points)`: a point or a neighbour up to two away, within `lo..=hi`.
fn around(points: Vec<usize>, lo: usize, hi: usize) -> impl Strategy<Value = usize> {
    (prop::sample::select(points), -2i64..=2)
        .prop_map(move |(p, d)| (p as i64 + d).clamp(lo as i64, hi as i64) as usize)
}

fn powers_of_two(up_to: usize) -> Vec<usize> {
    (0..usize::BITS)
        .map(|e| 1usize << e)
        .take_while(|&p| p <= up_to)
        .collect()
}

/// Pattern lengths where the code changes shape whatever the text: 2m crossing a power of
/// two (the FFT length; m = 32 is the 64 minimum), multiples of 255 (u8 counter flushes) and
/// of 4 (the four-position pass), and the sizes of the reported failures.
fn pattern_points() -> Vec<usize> {
    let mut points = powers_of_two(4096);
    points.extend([3, 5, 6, 7, 98, 100, 162, 255, 510, 765, 3000]);
    points
}

/// Pattern lengths for a text of `n`: the fixed points, and those that depend on n (m = n,
/// m = n - 1, and half the FFT length cap, where the block stops growing with m).
fn patterns_for(n: usize) -> Vec<usize> {
    let cap = n.next_power_of_two();
    let mut ms = pattern_points();
    for m in [cap / 2, n / 2, n] {
        ms.extend([m.saturating_sub(2), m.saturating_sub(1), m, m + 1, m + 2]);
    }
    ms.retain(|&m| (1..=n).contains(&m));
    ms
}

/// Window counts for a pattern of `m`: around whole numbers of FFT blocks (including block
/// counts near multiples of `4 x threads` tasks) and of the 4096-window naive and kangaroo
/// tasks, keeping the text within `max_n`.
fn windows_for(m: usize, max_n: usize) -> Vec<usize> {
    let step = (2 * m).next_power_of_two().max(64) - m + 1;
    let mut windows = vec![1, 2, 4095, 4096, 4097, 8191, 8192, 8193];
    for blocks in [
        1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 17, 24, 32, 33, 64, 65, 128, 129,
    ] {
        windows.extend([blocks * step - 1, blocks * step, blocks * step + 1]);
    }
    windows.retain(|&w| w >= 1 && w + m - 1 <= max_n);
    windows
}

/// (n, m): either the text length at a boundary and the pattern length at one relative to
/// it, or the pattern length at a boundary and the text cut at a block boundary.
fn sizes() -> impl Strategy<Value = (usize, usize)> {
    let mut text_points = powers_of_two(8192);
    text_points.extend([100, 1000, 1813, 3000, 6000, MAX_N]);
    prop_oneof![
        around(text_points, 1, MAX_N).prop_flat_map(|n| {
            (
                Just(n),
                prop_oneof![3 => prop::sample::select(patterns_for(n)), 1 => 1..=n],
            )
        }),
        around(pattern_points(), 1, 5000)
            .prop_flat_map(|m| (Just(m), prop::sample::select(windows_for(m, MAX_N))))
            .prop_map(|(m, w)| (w + m - 1, m)),
    ]
}

fn alphabet(n: usize) -> impl Strategy<Value = Alphabet> {
    let n = u32::try_from(n).expect("test texts are short");
    let tops = vec![65_535, 65_536, 2 * n - 1, 2 * n, 2 * n + 1, u32::MAX];
    prop_oneof![
        Just(Alphabet::Constant),
        prop::sample::select(vec![2u32, 3, 4, 26]).prop_map(Alphabet::Uniform),
        Just(Alphabet::Skewed),
        prop::sample::select(vec![252u32, 253, 254, 255, 256, 1000]).prop_map(Alphabet::Uniform),
        (
            prop::sample::select(tops),
            prop::sample::select(vec![1u32, 4, 300])
        )
            .prop_map(|(top, letters)| Alphabet::Top { top, letters }),
    ]
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![
        prop::sample::select(vec![0u64, 2, 16, 200]).prop_map(|one_in| Source::Window { one_in }),
        Just(Source::Random),
    ]
}

/// k at its own boundaries for a pattern of `m`: none, 0, 1, m - 1, m, m + 1 and the largest.
fn k_for(m: usize, choice: u8) -> Option<u32> {
    let m = m as u32;
    match choice % 8 {
        0 => None,
        1 => Some(0),
        2 => Some(1),
        3 => Some(m - 1),
        4 => Some(m),
        5 => Some(m + 1),
        6 => Some(u32::MAX),
        _ => Some(m / 3),
    }
}

/// An eps in (0, 1) giving `colours` colours (at least 5: eps < 1 means 4 / eps > 4).
fn eps_for_colours(colours: usize) -> f64 {
    4.0 / (colours.max(5) as f64 - 0.5)
}

#[derive(Debug, Clone)]
struct Case {
    n: usize,
    m: usize,
    alphabet: Alphabet,
    source: Source,
    k_choice: u8,
    colour_choice: u8,
    threads: usize,
    seed: u64,
}

impl Case {
    fn strings(&self) -> (Vec<u32>, Vec<u32>) {
        let text = self.alphabet.text(self.n, self.seed);
        let pattern = make_pattern(&text, self.m, self.alphabet, self.source, self.seed);
        (text, pattern)
    }

    /// Colours around the text's code range (one fewer: approximate; as many or one more:
    /// exact), or few.
    fn eps(&self, text: &[u32]) -> f64 {
        let range = code_range(text);
        eps_for_colours(match self.colour_choice % 5 {
            0 => range.saturating_sub(1),
            1 => range,
            2 => range + 1,
            3 => 5,
            _ => 9,
        })
    }
}

fn case() -> impl Strategy<Value = Case> {
    sizes().prop_flat_map(|(n, m)| {
        (
            alphabet(n),
            source(),
            any::<u8>(),
            any::<u8>(),
            prop::sample::select(THREADS.to_vec()),
            any::<u64>(),
        )
            .prop_map(
                move |(alphabet, source, k_choice, colour_choice, threads, seed)| Case {
                    n,
                    m,
                    alphabet,
                    source,
                    k_choice,
                    colour_choice,
                    threads,
                    seed,
                },
            )
    })
}

/// Every method that the case's sizes make affordable, against the direct count.
fn check_against_reference(case: &Case) -> Result<(), TestCaseError> {
    let (text, pattern) = case.strings();
    let (n, m) = (case.n, case.m);
    let k = k_for(m, case.k_choice);
    let want = reference(&text, &pattern);
    let windows = n - m + 1;
    let mut methods = vec![Method::Auto, Method::Naive, Method::Abrahamson];
    if fft_work(n, &pattern) <= FFT_WORK {
        methods.push(Method::Fft);
    }
    let jumps = k.map_or(usize::MAX, |k| (k as usize).min(m) + 1);
    if windows.saturating_mul(jumps) <= KANGAROO_WORK {
        methods.push(Method::Kangaroo);
    }
    pool(case.threads).install(|| {
        for method in methods {
            let got = text_to_pattern(&text, &pattern, &options(method, k, None)).unwrap();
            prop_assert_eq!(got, capped(&want, k), "{:?} k={:?}", method, k);
        }
        let eps = case.eps(&text);
        let colours = (4.0 / eps).ceil() as usize;
        let got = text_to_pattern(&text, &pattern, &options(Method::Approx, k, Some(eps))).unwrap();
        let want = capped(&want, k);
        if colours_cover_the_codes(&text, colours) {
            prop_assert_eq!(got, want, "approx with {} colours", colours);
        } else {
            for (i, (&g, &d)) in got.iter().zip(&want).enumerate() {
                prop_assert!(
                    (0..=d).contains(&g),
                    "approx with {colours} colours: {g} against {d} at {i}"
                );
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(240))]

    #[test]
    fn every_method_equals_the_reference_at_boundaries(case in case()) {
        check_against_reference(&case)?;
    }
}

/// (m, n) with the FFT's block count near a multiple of the `4 x threads` tasks, the last
/// block full, one short or holding a single window.
fn task_split_sizes() -> impl Strategy<Value = (usize, usize)> {
    let blocks = [
        1usize, 2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 23, 24, 25, 31, 32, 33, 63, 64, 65, 127, 128, 129,
    ];
    let step = |m: usize| (2 * m).next_power_of_two().max(64) - m + 1;
    around(pattern_points(), 1, 300)
        .prop_flat_map(move |m| {
            let fit: Vec<usize> = blocks
                .into_iter()
                .filter(|b| b * step(m) <= 20_000)
                .collect();
            (Just(m), prop::sample::select(fit), 0usize..3)
        })
        .prop_map(move |(m, blocks, last)| {
            let step = step(m);
            let short = [0, 1, step - 1][last];
            let windows = (blocks * step).saturating_sub(short).max(1);
            (m, windows + m - 1)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The FFT cuts its blocks by the thread count; kangaroo, the scan and the naive count cut
    /// by fixed sizes; approx repeats an exact method. None may depend on the pool.
    #[test]
    fn results_do_not_depend_on_the_thread_count(
        (m, n) in task_split_sizes(),
        alphabet in prop_oneof![
            Just(Alphabet::Constant),
            Just(Alphabet::Uniform(2)),
            Just(Alphabet::Uniform(4)),
            Just(Alphabet::Skewed),
        ],
        source in source(),
        seed in any::<u64>(),
    ) {
        let text = alphabet.text(n, seed);
        let pattern = make_pattern(&text, m, alphabet, source, seed);
        let want = reference(&text, &pattern);
        let k = Some((m / 4).min(8) as u32);
        let calls = [
            options(Method::Fft, None, None),
            options(Method::Abrahamson, None, None),
            options(Method::Naive, k, None),
            options(Method::Kangaroo, k, None),
            options(Method::Approx, None, Some(0.9)),
        ];
        let on = |threads: usize| -> Vec<Vec<i32>> {
            pool(threads).install(|| {
                calls
                    .iter()
                    .map(|o| text_to_pattern(&text, &pattern, o).unwrap())
                    .collect()
            })
        };
        let single = on(1);
        prop_assert_eq!(&single[0], &want);
        for threads in &THREADS[1..] {
            prop_assert_eq!(&on(*threads), &single, "{} threads", threads);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Several patterns of one length share the blocks' transforms (and kangaroo one suffix
    /// structure over all of them, approx the colourings): sharing must change nothing.
    #[test]
    fn patterns_of_one_length_share_a_text(
        (n, m) in around(vec![64, 128, 256, 1024, 2048, 3000], 2, 3000)
            .prop_flat_map(|n| (Just(n), prop::sample::select(patterns_for(n)))),
        alphabet in prop_oneof![
            Just(Alphabet::Uniform(3)),
            Just(Alphabet::Skewed),
            Just(Alphabet::Uniform(300)),
        ],
        threads in prop::sample::select(THREADS.to_vec()),
        seed in any::<u64>(),
    ) {
        let text = alphabet.text(n, seed);
        let sources = [Source::Window { one_in: 2 }, Source::Random, Source::Window { one_in: 0 }];
        let mut patterns: Vec<Vec<u32>> = sources
            .iter()
            .enumerate()
            .map(|(i, &s)| make_pattern(&text, m, alphabet, s, seed ^ i as u64))
            .collect();
        let other = (m / 2).max(1);
        patterns.push(make_pattern(&text, other, alphabet, Source::Window { one_in: 16 }, seed));
        patterns.push(text[..1].to_vec());
        patterns.push(text.clone());
        let borrowed: Vec<&[u32]> = patterns.iter().map(|p| &p[..]).collect();
        let wants: Vec<Vec<i32>> = patterns.iter().map(|p| reference(&text, p)).collect();
        let k = Some(3);
        let calls = [
            (options(Method::Auto, None, None), true),
            (options(Method::Fft, None, None), true),
            (options(Method::Abrahamson, None, None), true),
            (options(Method::Naive, k, None), true),
            (options(Method::Kangaroo, k, None), true),
            (options(Method::Approx, None, Some(0.5)), false),
        ];
        pool(threads).install(|| {
            for (o, exact) in calls {
                let together = text_to_patterns(&text, &borrowed, &o).unwrap();
                for ((p, got), want) in borrowed.iter().zip(&together).zip(&wants) {
                    prop_assert_eq!(got, &text_to_pattern(&text, p, &o).unwrap(), "{:?}", o.method);
                    if exact {
                        prop_assert_eq!(got, &capped(want, o.k), "{:?} m={}", o.method, p.len());
                    }
                }
            }
            Ok(())
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Texts past one and two Abrahamson scan tasks of 32768 windows, where 2n also passes
    /// 2^16 (the dense-code switch moves with it).
    #[test]
    fn scan_tasks_of_32768_windows(
        m in around(vec![1, 16, 100, 255], 1, 300),
        windows in around(vec![32_768, 65_536], 1, 70_000),
        alphabet in prop_oneof![
            Just(Alphabet::Skewed),
            Just(Alphabet::Uniform(1000)),
            prop::sample::select(vec![65_535u32, 65_536, 131_071, 131_072, u32::MAX])
                .prop_map(|top| Alphabet::Top { top, letters: 300 }),
        ],
        threads in prop::sample::select(THREADS.to_vec()),
        seed in any::<u64>(),
    ) {
        let n = windows + m - 1;
        let text = alphabet.text(n, seed);
        let pattern = make_pattern(&text, m, alphabet, Source::Window { one_in: 4 }, seed);
        let want = reference(&text, &pattern);
        let k = Some(2);
        pool(threads).install(|| {
            for method in [Method::Auto, Method::Naive, Method::Abrahamson] {
                let got = text_to_pattern(&text, &pattern, &options(method, None, None)).unwrap();
                prop_assert_eq!(&got, &want, "{:?}", method);
            }
            let got = text_to_pattern(&text, &pattern, &options(Method::Kangaroo, k, None)).unwrap();
            prop_assert_eq!(got, capped(&want, k));
            Ok(())
        })?;
    }
}
