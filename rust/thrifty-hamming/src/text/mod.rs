//! Text-to-pattern Hamming distances: for a text `T` of length n and a pattern `P` of length
//! m over `u32` symbols, the number of mismatches between `P` and `T[i..i + m]` for every
//! `i` in `0..=n - m`.
//!
//! Methods ([`Method`]): naive counting, per-letter FFT correlation, Abrahamson's
//! frequent/infrequent split, kangaroo jumps (k-bounded) and a (1 + eps)-approximation;
//! "auto" picks one with [`choose_method`].
//!
//! ```
//! use thrifty_hamming::text::{text_to_pattern, Method, Options};
//!
//! let text = b"abracadabra".map(u32::from);
//! let pattern = b"abr".map(u32::from);
//! let exact = text_to_pattern(&text, &pattern, &Options::default()).unwrap();
//! assert_eq!(exact, [0, 3, 3, 2, 3, 2, 3, 0, 3]);
//! let bounded = Options { method: Method::Kangaroo, k: Some(1), ..Options::default() };
//! assert_eq!(text_to_pattern(&text, &pattern, &bounded).unwrap(), [0, 2, 2, 2, 2, 2, 2, 0, 2]);
//! ```
//!
//! **k-bounded semantics.** With `k = Some(k)`, every method reports a distance greater than
//! `k` as `k + 1`; distances up to `k` are exact (for "approx": as exact as its guarantee).

mod abrahamson;
mod alphabet;
mod approx;
mod auto;
mod fft;
mod kangaroo;
mod lce;
mod method;
mod naive;

use std::collections::BTreeMap;

use thrifty_core::{CoreError, CoreResult};

pub use auto::choose_method;
pub use method::{Method, Options};

use alphabet::{pattern_letters, DenseText};

/// The methods that count matches exactly for any letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exact {
    Naive,
    Fft,
    Abrahamson,
}

impl Exact {
    fn from_method(method: Method) -> Exact {
        match method {
            Method::Fft => Exact::Fft,
            Method::Abrahamson => Exact::Abrahamson,
            _ => Exact::Naive,
        }
    }
}

/// Matches per window by one exact counting method.
pub(crate) fn exact_matches(text: &DenseText, pattern: &[u32], method: Exact) -> Vec<u32> {
    match method {
        Exact::Naive => naive::matches(text, pattern),
        Exact::Fft => fft::matches(&text.codes, pattern, &pattern_letters(pattern)),
        Exact::Abrahamson => abrahamson::matches(text, pattern),
    }
}

/// The Hamming distance between `pattern` and every window of `text`.
///
/// Returns `text.len() - pattern.len() + 1` distances. Errors name the argument: an empty
/// `pattern`, a `pattern` longer than the text, `eps` outside (0, 1), "kangaroo" without `k`,
/// "approx" without `eps`.
pub fn text_to_pattern(text: &[u32], pattern: &[u32], options: &Options) -> CoreResult<Vec<i32>> {
    check_pattern("pattern", None, pattern, text.len())?;
    let mut all = text_to_patterns(text, &[pattern], options)?;
    Ok(all.pop().expect("one pattern in, one result out"))
}

/// Many patterns over one text, sharing the text's preprocessing (letter positions / per-letter
/// FFTs of text blocks where it helps, the LCE structure for kangaroo).
///
/// Shared: the text's dense letter codes and counts; the FFT of each text block per letter
/// among the "fft" and "abrahamson" patterns of one length (other lengths want other blocks);
/// one suffix array over the text and every kangaroo pattern; the colourings of the text
/// under "approx" (whose coloured FFTs are not shared).
pub fn text_to_patterns(
    text: &[u32],
    patterns: &[&[u32]],
    options: &Options,
) -> CoreResult<Vec<Vec<i32>>> {
    for (i, p) in patterns.iter().enumerate() {
        check_pattern("patterns", Some(i), p, text.len())?;
    }
    if let Some(eps) = options.eps {
        if !(eps > 0.0 && eps < 1.0) {
            return Err(CoreError::invalid(
                "eps",
                format!("must be in (0, 1), got {eps}"),
            ));
        }
    }
    match options.method {
        Method::Kangaroo if options.k.is_none() => {
            return Err(CoreError::invalid("k", "method \"kangaroo\" needs k"));
        }
        Method::Approx if options.eps.is_none() => {
            return Err(CoreError::invalid("eps", "method \"approx\" needs eps"));
        }
        _ => {}
    }
    if patterns.is_empty() {
        return Ok(Vec::new());
    }
    let dense = DenseText::new(text);
    let codes: Vec<Vec<u32>> = patterns.iter().map(|p| dense.pattern_codes(p)).collect();
    let n = text.len();
    let methods: Vec<Method> = codes
        .iter()
        .map(|p| match options.method {
            Method::Auto => {
                choose_method(n, p.len(), pattern_letters(p).len(), options.k, options.eps)
            }
            // With a colour for every symbol, colouring changes nothing but costs repetitions
            // (and tiny eps would ask for billions of colours): the exact answer is the best
            // approximation.
            Method::Approx
                if options
                    .eps
                    .is_some_and(|eps| approx::colours(eps) >= dense.sigma()) =>
            {
                auto::choose_exact(n, p.len(), pattern_letters(p).len())
            }
            chosen => chosen,
        })
        .collect();

    let mut out: Vec<Option<Vec<i32>>> = vec![None; patterns.len()];
    let of = |method: Method| -> Vec<usize> {
        (0..patterns.len())
            .filter(|&i| methods[i] == method)
            .collect()
    };

    let kangaroos = of(Method::Kangaroo);
    if let (false, Some(k)) = (kangaroos.is_empty(), options.k) {
        let chosen: Vec<Vec<u32>> = kangaroos.iter().map(|&i| codes[i].clone()).collect();
        let structure = kangaroo::Kangaroo::new(&dense, &chosen);
        for (slot, &i) in kangaroos.iter().enumerate() {
            let m = codes[i].len();
            out[i] = Some(structure.distances(slot, m, (k as usize).min(m)));
        }
    }

    let approximate = of(Method::Approx);
    if let (false, Some(eps)) = (approximate.is_empty(), options.eps) {
        let chosen: Vec<&[u32]> = approximate.iter().map(|&i| patterns[i]).collect();
        let colours = approx::colours(eps);
        let exact: Vec<Exact> = chosen
            .iter()
            .map(|p| Exact::from_method(auto::choose_exact(n, p.len(), colours)))
            .collect();
        let results = approx::distances(text, &chosen, &exact, eps, options.seed);
        for (&i, d) in approximate.iter().zip(results) {
            out[i] = Some(d);
        }
    }

    // Exact methods. Patterns of one length share the FFTs of the text's blocks, so FFT and
    // Abrahamson patterns are grouped by length: (pattern, letters by FFT, letters by scan).
    let mut by_length: BTreeMap<usize, Vec<Planned>> = BTreeMap::new();
    for i in 0..patterns.len() {
        if out[i].is_some() {
            continue;
        }
        let p = &codes[i];
        let planned = match Exact::from_method(methods[i]) {
            Exact::Naive => {
                out[i] = Some(distances(p.len(), naive::matches(&dense, p)));
                continue;
            }
            Exact::Fft => (i, pattern_letters(p), Vec::new()),
            Exact::Abrahamson => {
                let (frequent, infrequent) = abrahamson::split(&dense, p);
                (i, frequent, infrequent)
            }
        };
        by_length.entry(p.len()).or_default().push(planned);
    }
    for group in by_length.values() {
        let pats: Vec<&[u32]> = group.iter().map(|g| &codes[g.0][..]).collect();
        let letters: Vec<&[u32]> = group.iter().map(|g| &g.1[..]).collect();
        let shared = fft::matches_shared(&dense.codes, &pats, &letters);
        for ((i, _, scanned), mut matches) in group.iter().zip(shared) {
            abrahamson::add_scan(&dense, &codes[*i], scanned, &mut matches);
            out[*i] = Some(distances(codes[*i].len(), matches));
        }
    }

    Ok(out
        .into_iter()
        .map(|d| {
            let mut d = d.expect("every pattern got a method");
            if let Some(k) = options.k {
                let cap = (i64::from(k) + 1).min(i64::from(i32::MAX)) as i32;
                d.iter_mut().for_each(|x| *x = (*x).min(cap));
            }
            d
        })
        .collect())
}

/// A pattern for the FFT path: its index, its letters by FFT, its letters by scan.
type Planned = (usize, Vec<u32>, Vec<u32>);

/// Distances from match counts.
fn distances(m: usize, matches: Vec<u32>) -> Vec<i32> {
    let m = m as i32;
    matches.into_iter().map(|x| m - x as i32).collect()
}

fn check_pattern(
    argument: &'static str,
    index: Option<usize>,
    pattern: &[u32],
    n: usize,
) -> CoreResult<()> {
    let which = index.map_or(String::new(), |i| format!("pattern {i} "));
    let m = pattern.len();
    if m == 0 {
        return Err(CoreError::invalid(
            argument,
            format!("{which}must not be empty"),
        ));
    }
    if m > n {
        return Err(CoreError::shape(
            argument,
            format!("{which}is longer than the text: {m} symbols against {n}"),
        ));
    }
    if m > i32::MAX as usize {
        return Err(CoreError::shape(
            argument,
            format!("{which}has {m} symbols, more than distances in i32 can count"),
        ));
    }
    Ok(())
}
