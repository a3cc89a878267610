//! Quantized all-reduce that quantizes every value once per direction, not once per hop.
//!
//! PCCL re-quantizes the running partial sum at every ring hop, so its error grows with the
//! world size. Here the reduce-scatter sends each peer's contribution to slice `j` straight to
//! slice `j`'s owner, quantized once (the bytes per peer are the same as a ring's). The owner
//! decodes the contributions, reduces them in fp32 in rank order (its own contribution exact),
//! and quantizes the result once. The all-gather then forwards those bytes unchanged around
//! the ring, and every peer, the owner included, decodes the same bytes: results are
//! bit-identical everywhere, and the error of an element is at most the sum of the other
//! peers' input errors plus one output error, whatever the world size (see `block_quant`).
//!
//! The caller's buffer is only read during the collective: the encoded results of every
//! slice are kept (a quarter of the buffer or less) and decoded into it once the coordinator
//! commits. An aborted collective therefore has nothing to restore, and no backup is taken.

use std::collections::VecDeque;
use std::ops::Range;

use thrifty_core::{CoreError, CoreResult};

use crate::aligned_buf::AlignedBuf;
use crate::block_quant::Quantization;
use crate::convert::{from_f32, to_f32};
use crate::dtype::{DType, ReduceOp};
use crate::engine::{FrameSchedule, Incoming, Outgoing};
use crate::group::Group;
use crate::layout::{bytes, Layout};
use crate::mesh::{LinkId, Mesh};
use crate::reduce::reduce_f32;

enum Send {
    /// This peer's contribution to chunk `k` of slice `slice`, for that slice's owner.
    Contribution { slice: usize, k: usize },
    /// All-gather step `s`: forward the encoded result of chunk `k`.
    Result { s: usize, k: usize },
}

enum Recv {
    /// Group member `from`'s contribution to chunk `k` of our slice.
    Contribution {
        from: usize,
        k: usize,
    },
    Result {
        s: usize,
        k: usize,
    },
}

/// The buffers of a quantized all-reduce, kept by the communicator from one collective to
/// the next: allocating and zeroing them anew cost more page faults than the codec's work.
#[derive(Default)]
pub struct QuantizedScratch {
    outgoing: Vec<AlignedBuf>,
    contributions: Vec<Vec<Vec<u8>>>,
    results: Vec<Vec<Vec<u8>>>,
    acc: Vec<f32>,
    scratch: Vec<f32>,
}

pub struct QuantizedAllReduce<'a> {
    data: &'a mut [u8],
    dtype: DType,
    op: ReduceOp,
    format: Quantization,
    block: usize,
    layout: Layout,
    n: usize,
    pos: usize,
    sends: Vec<VecDeque<Send>>,
    recvs: Vec<VecDeque<Recv>>,
    /// The encoded contribution being sent on each link.
    outgoing: &'a mut Vec<AlignedBuf>,
    /// contributions[k][from]: encoded, for our own slice.
    contributions: &'a mut Vec<Vec<Vec<u8>>>,
    arrived: Vec<usize>,
    /// results[slice][k]: the owner's encoded result.
    results: &'a mut Vec<Vec<Vec<u8>>>,
    /// forwarded[s][k]: all-gather step `s` of chunk `k` has arrived (ours is step "-1").
    forwarded: Vec<Vec<bool>>,
    reduced: Vec<bool>,
    acc: &'a mut Vec<f32>,
    scratch: &'a mut Vec<f32>,
}

/// Values converted to float32 at once when a world of one checks its input.
const CHECKED_AT_ONCE: usize = 1 << 16;

impl<'a> QuantizedAllReduce<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mesh: &Mesh,
        group: &Group,
        data: &'a mut [u8],
        dtype: DType,
        op: ReduceOp,
        format: Quantization,
        block: usize,
        chunk_elems: usize,
        buffers: &'a mut QuantizedScratch,
    ) -> Self {
        let n = group.len();
        let pos = group.pos;
        let elem = dtype.size();
        let layout = Layout::new(data.len() / elem, n, block, chunk_elems);
        let chunks = layout.chunks();
        let links = mesh.links.len();
        let mut sends: Vec<VecDeque<Send>> = (0..links).map(|_| VecDeque::new()).collect();
        let mut recvs: Vec<VecDeque<Recv>> = (0..links).map(|_| VecDeque::new()).collect();
        if n > 1 {
            // Contributions first on every link, then the ring's results, in the same order
            // on both ends of each link.
            for (q, &rank) in group.ranks.iter().enumerate() {
                if q == pos {
                    continue;
                }
                for k in 0..chunks {
                    let link = mesh.link(rank, k);
                    sends[link].push_back(Send::Contribution { slice: q, k });
                    recvs[link].push_back(Recv::Contribution { from: q, k });
                }
            }
            for s in 0..n - 1 {
                for k in 0..chunks {
                    sends[mesh.link(group.right(), k)].push_back(Send::Result { s, k });
                    recvs[mesh.link(group.left(), k)].push_back(Recv::Result { s, k });
                }
            }
        }
        let QuantizedScratch {
            outgoing,
            contributions,
            results,
            acc,
            scratch,
        } = buffers;
        outgoing.resize_with(links, AlignedBuf::default);
        contributions.resize_with(chunks, Vec::new);
        contributions
            .iter_mut()
            .for_each(|c| c.resize_with(n, Vec::new));
        results.resize_with(n, Vec::new);
        results
            .iter_mut()
            .for_each(|r| r.resize_with(chunks, Vec::new));
        // Kept buffers keep their capacity, not their bytes: the engine asks for no buffer
        // for an empty frame (a slice or chunk with no elements), so a buffer left from an
        // earlier collective would be decoded as that frame.
        contributions.iter_mut().flatten().for_each(Vec::clear);
        results.iter_mut().flatten().for_each(Vec::clear);
        Self {
            data,
            dtype,
            op,
            format,
            block,
            n,
            pos,
            sends,
            recvs,
            outgoing,
            contributions,
            arrived: vec![0; chunks],
            results,
            forwarded: vec![vec![false; chunks]; n.saturating_sub(1)],
            reduced: vec![false; chunks],
            acc,
            scratch,
            layout,
        }
    }

    fn elements(&self, slice: usize, k: usize) -> Range<usize> {
        self.layout.chunk(slice, k)
    }

    fn encoded_len(&self, slice: usize, k: usize) -> usize {
        self.format
            .encoded_len(self.elements(slice, k).len(), self.block)
    }

    fn slice_at_step(&self, s: usize) -> usize {
        // All-gather step s forwards the result of slice pos - s (step 0: our own).
        (self.pos + self.n - s % self.n) % self.n
    }

    /// A world of one exchanges nothing, so nothing is encoded and nothing would reject a
    /// value the quantizer cannot carry: check the input here instead, so that a program that
    /// runs alone fails the way it will once it has peers.
    pub fn verify(&mut self) -> CoreResult<()> {
        if self.n > 1 {
            return Ok(());
        }
        let elems = self.data.len() / self.dtype.size();
        for range in thrifty_core::parallel::ranges(elems, elems.div_ceil(CHECKED_AT_ONCE)) {
            let values = Self::own_values(self.data, self.dtype, range.clone(), self.scratch)?;
            if let Some(offset) = values.iter().position(|v| !v.is_finite()) {
                let value = values[offset];
                return Err(unquantizable(
                    self.data,
                    self.dtype,
                    range.start + offset,
                    value,
                ));
            }
        }
        Ok(())
    }

    /// The coordinator committed: decode every slice's result into the caller's buffer.
    /// (A world of one has nothing to decode: its buffer already is the result.)
    pub fn commit(&mut self) -> CoreResult<()> {
        if self.n < 2 {
            return Ok(());
        }
        for slice in 0..self.n {
            for k in 0..self.layout.chunks() {
                let encoded = std::mem::take(&mut self.results[slice][k]);
                self.write_result(slice, k, &encoded)?;
                self.results[slice][k] = encoded;
            }
        }
        Ok(())
    }

    /// Decode `encoded` into chunk `k` of `slice` of the caller's buffer.
    fn write_result(&mut self, slice: usize, k: usize, encoded: &[u8]) -> CoreResult<()> {
        let range = self.elements(slice, k);
        let elem = self.dtype.size();
        let target = &mut self.data[bytes(range.clone(), elem)];
        // float32 decodes in place; other types go through fp32 scratch.
        if self.dtype == DType::F32 {
            if let Ok(values) = bytemuck::try_cast_slice_mut::<u8, f32>(target) {
                return self.format.decode(encoded, self.block, values);
            }
        }
        self.scratch.resize(range.len(), 0.0);
        self.format.decode(encoded, self.block, self.scratch)?;
        from_f32(self.dtype, self.scratch, &mut self.data[bytes(range, elem)])
    }

    /// This peer's values of an element range as fp32: a view for float32, else converted
    /// into `scratch`.
    fn own_values<'s>(
        data: &'s [u8],
        dtype: DType,
        range: Range<usize>,
        scratch: &'s mut Vec<f32>,
    ) -> CoreResult<&'s [f32]> {
        let raw = &data[bytes(range.clone(), dtype.size())];
        if dtype == DType::F32 {
            if let Ok(values) = bytemuck::try_cast_slice::<u8, f32>(raw) {
                return Ok(values);
            }
        }
        scratch.resize(range.len(), 0.0);
        to_f32(dtype, raw, scratch)?;
        Ok(scratch)
    }

    /// Every contribution to chunk `k` of our slice is in: reduce, encode once, decode.
    fn reduce(&mut self, k: usize) -> CoreResult<()> {
        let range = self.elements(self.pos, k);
        self.acc.resize(range.len(), 0.0);
        for q in 0..self.n {
            let first = q == 0;
            if q == self.pos {
                let own = Self::own_values(self.data, self.dtype, range.clone(), self.scratch)?;
                if first {
                    self.acc.copy_from_slice(own);
                } else {
                    reduce_f32(self.op, self.acc, own);
                }
            } else if first {
                self.format
                    .decode(&self.contributions[k][q], self.block, self.acc)?;
            } else {
                self.format.decode_reduce(
                    &self.contributions[k][q],
                    self.block,
                    self.op,
                    self.acc,
                )?;
            }
        }
        if self.op == ReduceOp::Avg {
            let n = self.n as f32;
            self.acc.iter_mut().for_each(|v| *v /= n);
        }
        let len = self.encoded_len(self.pos, k);
        let encoded = &mut self.results[self.pos][k];
        encoded.resize(len, 0);
        if let Err(error) = self.format.encode(self.acc, self.block, encoded, "array") {
            return Err(self.unreducible(range, error));
        }
        self.reduced[k] = true;
        Ok(())
    }

    /// Why the reduction of element range `range` (our slice) cannot be quantized: our own
    /// input there is not finite (the others' would have failed on their side), or the
    /// ranks' values combine to a non-finite float32. Named by the index in the array, not
    /// in the chunk.
    fn unreducible(&mut self, range: Range<usize>, error: CoreError) -> CoreError {
        let Some(offset) = self.acc.iter().position(|v| !v.is_finite()) else {
            return error;
        };
        let index = range.start + offset;
        let own = match Self::own_values(self.data, self.dtype, index..index + 1, self.scratch) {
            Ok(own) => own[0],
            Err(error) => return error,
        };
        if !own.is_finite() {
            return unquantizable(self.data, self.dtype, index, own);
        }
        CoreError::non_finite(
            "array",
            format!(
                "the {} over the ranks is {} in float32 at index {index}, which cannot be \
                 quantized (the quantized all-reduce combines in float32)",
                self.op.name(),
                self.acc[offset]
            ),
        )
    }
}

/// The error for element `index` of the caller's array, whose float32 value `value` is not
/// finite: a NaN or infinity, or a float64 beyond the float32 range the quantizer works in.
/// (`Quantization::encode` reports an index in the chunk it was given, not in the array.)
fn unquantizable(data: &[u8], dtype: DType, index: usize, value: f32) -> CoreError {
    if dtype == DType::F64 {
        let at = bytes(index..index + 1, 8);
        if let Ok(raw) = <[u8; 8]>::try_from(&data[at]) {
            let original = f64::from_ne_bytes(raw);
            if original.is_finite() {
                return CoreError::invalid(
                    "array",
                    format!(
                        "must lie within the float32 range to quantize, got {original:e} at \
                         index {index}"
                    ),
                );
            }
        }
    }
    CoreError::non_finite(
        "array",
        format!("must be finite to quantize, got {value} at index {index}"),
    )
}

impl FrameSchedule for QuantizedAllReduce<'_> {
    fn next_send(&mut self, link: LinkId) -> CoreResult<Option<Outgoing>> {
        let chunks = self.layout.chunks();
        let ready = match self.sends[link].front() {
            None => return Ok(None),
            Some(Send::Contribution { .. }) => true,
            Some(Send::Result { s, k }) => {
                if *s == 0 {
                    self.reduced[*k]
                } else {
                    self.forwarded[*s - 1][*k]
                }
            }
        };
        if !ready {
            return Ok(None);
        }
        match self.sends[link].pop_front().expect("front exists") {
            Send::Contribution { slice, k } => {
                let range = self.elements(slice, k);
                let len = self.encoded_len(slice, k);
                let values = Self::own_values(self.data, self.dtype, range.clone(), self.scratch)?;
                let out = &mut self.outgoing[link];
                out.resize(len);
                if let Err(error) =
                    self.format
                        .encode(values, self.block, out.as_bytes_mut(), "array")
                {
                    return Err(match values.iter().position(|v| !v.is_finite()) {
                        Some(offset) => unquantizable(
                            self.data,
                            self.dtype,
                            range.start + offset,
                            values[offset],
                        ),
                        None => error,
                    });
                }
                Ok(Some(Outgoing {
                    index: k as u32,
                    region: 1 + link,
                    range: 0..len,
                }))
            }
            Send::Result { s, k } => {
                let slice = self.slice_at_step(s);
                Ok(Some(Outgoing {
                    index: (chunks + s * chunks + k) as u32,
                    region: self.outgoing.len() + 1 + slice * chunks + k,
                    range: 0..self.results[slice][k].len(),
                }))
            }
        }
    }

    /// Regions: `1 + link` is the contribution staged for that link; past the links,
    /// `1 + links + slice * chunks + k` is the encoded result of that chunk.
    fn bytes(&self, region: usize, range: Range<usize>) -> &[u8] {
        let links = self.outgoing.len();
        if region > links {
            let slot = region - links - 1;
            let chunks = self.layout.chunks();
            &self.results[slot / chunks][slot % chunks][range]
        } else {
            &self.outgoing[region - 1].as_bytes()[range]
        }
    }

    fn next_recv(&mut self, link: LinkId) -> Option<Incoming> {
        let chunks = self.layout.chunks();
        match self.recvs[link].front()? {
            Recv::Contribution { k, .. } => Some(Incoming {
                index: *k as u32,
                len: self.encoded_len(self.pos, *k),
            }),
            Recv::Result { s, k } => Some(Incoming {
                index: (chunks + s * chunks + k) as u32,
                len: self.encoded_len(self.slice_at_step(s + 1), *k),
            }),
        }
    }

    fn recv_into(&mut self, link: LinkId, incoming: Incoming) -> &mut [u8] {
        let buf = match self.recvs[link].front().expect("an expected frame") {
            Recv::Contribution { from, k } => &mut self.contributions[*k][*from],
            Recv::Result { s, k } => {
                let slice = (self.pos + 2 * self.n - s - 1) % self.n;
                &mut self.results[slice][*k]
            }
        };
        buf.resize(incoming.len, 0);
        buf
    }

    fn received(&mut self, link: LinkId, _incoming: Incoming) -> CoreResult<()> {
        match self.recvs[link]
            .pop_front()
            .ok_or_else(|| CoreError::Internal("an unexpected frame".into()))?
        {
            Recv::Contribution { k, .. } => {
                self.arrived[k] += 1;
                if self.arrived[k] == self.n - 1 {
                    self.reduce(k)?;
                }
            }
            Recv::Result { s, k } => {
                self.forwarded[s][k] = true;
            }
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        self.sends.iter().all(VecDeque::is_empty) && self.recvs.iter().all(VecDeque::is_empty)
    }
}
