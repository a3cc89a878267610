//! Bad input to `text_to_pattern` is refused with an error that names the argument.

use thrifty_core::Choice;
use thrifty_hamming::text::{text_to_pattern, text_to_patterns, Method, Options};

fn argument(r: Result<Vec<i32>, thrifty_core::CoreError>) -> &'static str {
    r.unwrap_err().argument().expect("names an argument")
}

#[test]
fn empty_and_long_patterns() {
    let o = Options::default();
    assert_eq!(argument(text_to_pattern(&[1, 2], &[], &o)), "pattern");
    let e = text_to_pattern(&[1, 2], &[1, 2, 3], &o).unwrap_err();
    assert_eq!(e.argument(), Some("pattern"));
    assert!(e.to_string().contains("longer than the text"), "{e}");
    assert_eq!(argument(text_to_pattern(&[], &[1], &o)), "pattern");
    let e = text_to_patterns(&[1, 2], &[&[1], &[]], &o).unwrap_err();
    assert_eq!(e.argument(), Some("patterns"));
    assert!(e.to_string().contains("pattern 1"), "{e}");
}

#[test]
fn eps_k_and_method_names() {
    for eps in [0.0, 1.0, -0.5, 2.0, f64::NAN] {
        let o = Options {
            eps: Some(eps),
            ..Options::default()
        };
        assert_eq!(argument(text_to_pattern(&[1, 2], &[1], &o)), "eps");
    }
    let o = Options {
        method: Method::Kangaroo,
        ..Options::default()
    };
    assert_eq!(argument(text_to_pattern(&[1, 2], &[1], &o)), "k");
    let o = Options {
        method: Method::Approx,
        ..Options::default()
    };
    assert_eq!(argument(text_to_pattern(&[1, 2], &[1], &o)), "eps");
    for m in [
        Method::Auto,
        Method::Naive,
        Method::Fft,
        Method::Abrahamson,
        Method::Kangaroo,
        Method::Approx,
    ] {
        assert_eq!(Method::parse(m.name()).unwrap(), m);
    }
    let e = Method::parse("fast").unwrap_err();
    assert_eq!(e.argument(), Some("method"));
    assert!(e.to_string().contains("\"fast\""), "{e}");
    assert!(text_to_patterns(&[1], &[], &Options::default())
        .unwrap()
        .is_empty());
}
