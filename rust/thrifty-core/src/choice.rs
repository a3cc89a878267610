//! Named options: a closed set of values that a caller picks by name (`method="fft"`).
//!
//! Each option enum lists its values once, in [`Choice::ALL`]; parsing, the error for an
//! unknown name, and the list of names that the Python layer offers all derive from it, so a
//! new value is added in one place.

use crate::{CoreError, CoreResult};

/// A closed set of options, each with the name a caller writes.
pub trait Choice: Copy + PartialEq + Sized + 'static {
    /// The argument that takes these options; the error for an unknown name names it.
    const ARGUMENT: &'static str;
    /// Every option, in the order the documentation lists them.
    const ALL: &'static [Self];

    /// The option's name, as a caller writes it.
    fn name(self) -> &'static str;

    /// Every option's name, in the order of [`Choice::ALL`].
    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|c| c.name()).collect()
    }

    /// Every name, quoted and separated by commas, for messages.
    fn listed() -> String {
        let quoted: Vec<String> = Self::names().iter().map(|n| format!("{n:?}")).collect();
        quoted.join(", ")
    }

    /// The option called `name`.
    ///
    /// # Errors
    /// `InvalidValue` naming [`Choice::ARGUMENT`] and every allowed name.
    fn parse(name: &str) -> CoreResult<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.name() == name)
            .ok_or_else(|| {
                CoreError::invalid(
                    Self::ARGUMENT,
                    format!("must be one of {}, got {name:?}", Self::listed()),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Side {
        Left,
        Right,
    }

    impl Choice for Side {
        const ARGUMENT: &'static str = "side";
        const ALL: &'static [Self] = &[Side::Left, Side::Right];
        fn name(self) -> &'static str {
            match self {
                Side::Left => "left",
                Side::Right => "right",
            }
        }
    }

    #[test]
    fn every_name_parses_back_to_its_option() {
        for &side in Side::ALL {
            assert_eq!(Side::parse(side.name()), Ok(side));
        }
        assert_eq!(Side::names(), ["left", "right"]);
    }

    #[test]
    fn an_unknown_name_is_refused_naming_the_argument_and_the_choices() {
        let error = Side::parse("Left").unwrap_err();
        assert_eq!(error.argument(), Some("side"));
        assert_eq!(
            error.to_string(),
            "side: must be one of \"left\", \"right\", got \"Left\""
        );
    }
}
