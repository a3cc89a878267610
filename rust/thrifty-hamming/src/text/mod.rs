//! Text-to-pattern Hamming distances.
