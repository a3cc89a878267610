//! What the text tests share: the definition every method is checked against.

/// The Hamming distance of `pattern` to every window of `text`, counted directly.
pub fn reference(text: &[u32], pattern: &[u32]) -> Vec<i32> {
    (0..=text.len() - pattern.len())
        .map(|i| {
            pattern
                .iter()
                .zip(&text[i..])
                .filter(|(p, t)| p != t)
                .count() as i32
        })
        .collect()
}
