//! The members taking part in one collective, in ring order, and this peer's place among
//! them: the whole view for most collectives, a seeded subgroup for `pair_average`.

#[derive(Clone, Debug)]
pub struct Group {
    /// Ranks in the mesh's view.
    pub ranks: Vec<usize>,
    pub pos: usize,
}

impl Group {
    pub fn len(&self) -> usize {
        self.ranks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranks.is_empty()
    }

    fn at(&self, offset: isize) -> usize {
        let n = self.ranks.len() as isize;
        self.ranks[((self.pos as isize + offset).rem_euclid(n)) as usize]
    }

    /// The next member in ring order, which this one sends to.
    pub fn right(&self) -> usize {
        self.at(1)
    }

    /// The previous member in ring order, which this one receives from.
    pub fn left(&self) -> usize {
        self.at(-1)
    }
}
