//! Packing token streams into fixed-length sequences. A pure state machine, tested against
//! the definition below and against tests/python/packing_reference.py.
//!
//! [CLS] and [SEP] below are the tokenizer's own cls and sep ids, whatever their names
//! (`[CLS]`/`[SEP]` for BERT, `<s>`/`</s>` for RoBERTa, XLM-R and CamemBERT, as their
//! post-processors wrap a sequence): the packer only sees the ids it is given.
//!
//! With L = `max_seq_len` and C = L - 2 content tokens per sequence:
//! - `concat`: the documents of a split, in stream order, form one stream
//!   `d1 [SEP] d2 [SEP] ... [SEP] dn` (a [SEP] *between* documents, none after the last;
//!   documents without tokens are dropped and add no [SEP]). The stream is cut into
//!   consecutive blocks of C tokens; every block becomes `[CLS] block [SEP]`. The last block
//!   may be shorter and is kept (run_mlm's `group_texts` drops it).
//! - `document`: every document alone is cut into consecutive windows of C tokens, each
//!   `[CLS] window [SEP]`; a document's last window may be shorter.
//!
//! Word starts: [CLS], [SEP] (the wrap and the separators) start a word of their own; a
//! document token starts a word when its word id differs from the previous token's of the
//! same document (or it has none, or it is the document's first); and the first content
//! token of every sequence starts a word, so that a word cut by a sequence border is a
//! whole word within each sequence (whole-word masking never spans sequences).

use serde::{Deserialize, Serialize};

use crate::config::Packing;

/// One packed sequence.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Block {
    pub input_ids: Vec<u32>,
    pub word_starts: Vec<bool>,
    /// Where masking units begin (a corpus prepared with phrases): word starts less those
    /// inside a phrase; the same border rules as word starts.
    pub unit_starts: Option<Vec<bool>>,
}

/// Where packing stands after a sequence: the next unit to pack is unit `unit` of the
/// document with stream ordinal `ordinal` (units: the separator, if `separator`, then the
/// document's tokens). A resumed prepare re-tokenizes that document and goes on from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumePoint {
    pub ordinal: u64,
    pub unit: u64,
    pub separator: bool,
}

/// The packing state of one split.
#[derive(Debug, Clone)]
pub struct Packer {
    mode: Packing,
    content: usize,
    cls: u32,
    sep: u32,
    ids: Vec<u32>,
    starts: Vec<bool>,
    /// Unit starts, kept only by the packer of a phrase corpus ([`Packer::with_units`]).
    units: Option<Vec<bool>>,
    /// A document was packed before: the next one (concat) starts with a separator.
    started: bool,
    last: Option<ResumePoint>,
}

impl Packer {
    /// `max_seq_len` must be at least 3 (validated by the config).
    pub fn new(mode: Packing, max_seq_len: usize, cls: u32, sep: u32) -> Self {
        let content = max_seq_len.saturating_sub(2).max(1);
        Self {
            mode,
            content,
            cls,
            sep,
            ids: Vec::with_capacity(content),
            starts: Vec::with_capacity(content),
            units: None,
            started: false,
            last: None,
        }
    }

    /// A packer that continues after `point` (its buffer was empty there, as it is after
    /// every emitted sequence).
    pub fn resumed(
        mode: Packing,
        max_seq_len: usize,
        cls: u32,
        sep: u32,
        point: ResumePoint,
    ) -> Self {
        let mut packer = Self::new(mode, max_seq_len, cls, sep);
        // A document was packed before the resume point, unless it is the very start.
        packer.started = point.ordinal > 0 || point.unit > 0 || point.separator;
        packer.last = Some(point);
        packer
    }

    /// This packer also packs unit starts (a corpus prepared with phrases).
    pub fn with_units(mut self) -> Self {
        self.units = Some(Vec::with_capacity(self.content));
        self
    }

    fn emit_block<E>(
        &mut self,
        point: ResumePoint,
        emit: &mut impl FnMut(Block, ResumePoint) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut input_ids = Vec::with_capacity(self.ids.len() + 2);
        input_ids.push(self.cls);
        input_ids.append(&mut self.ids);
        input_ids.push(self.sep);
        let mut word_starts = Vec::with_capacity(self.starts.len() + 2);
        word_starts.push(true);
        word_starts.append(&mut self.starts);
        word_starts.push(true);
        let unit_starts = self.units.as_mut().map(|units| {
            let mut unit_starts = Vec::with_capacity(units.len() + 2);
            unit_starts.push(true);
            unit_starts.append(units);
            unit_starts.push(true);
            unit_starts
        });
        emit(
            Block {
                input_ids,
                word_starts,
                unit_starts,
            },
            point,
        )
    }

    /// Packs document `ordinal` (its tokens and word starts, at least one token; `units`,
    /// its unit starts, for a packer [`Packer::with_units`], else ignored). With `resume`
    /// pointing into this document, packing starts at the resume unit.
    pub fn push<E>(
        &mut self,
        ordinal: u64,
        ids: &[u32],
        starts: &[bool],
        units: Option<&[bool]>,
        resume: Option<ResumePoint>,
        emit: &mut impl FnMut(Block, ResumePoint) -> Result<(), E>,
    ) -> Result<(), E> {
        debug_assert_eq!(ids.len(), starts.len());
        let (separator, first) = match resume {
            Some(p) if p.ordinal == ordinal => (p.separator, p.unit as usize),
            _ => (self.mode == Packing::Concat && self.started, 0),
        };
        let skip = usize::from(separator);
        let total = skip + ids.len();
        for unit in first..total {
            let (id, start, unit_start) = if unit < skip {
                (self.sep, true, true)
            } else {
                let at = unit - skip;
                let unit_start = units.and_then(|u| u.get(at).copied());
                (ids[at], starts[at], unit_start.unwrap_or(starts[at]))
            };
            // The first content token of a sequence starts a word (see the module comment).
            let first_content = self.ids.is_empty();
            if let Some(kept) = self.units.as_mut() {
                kept.push(unit_start || first_content);
            }
            self.ids.push(id);
            self.starts.push(start || first_content);
            let point = ResumePoint {
                ordinal,
                unit: unit as u64 + 1,
                separator,
            };
            self.last = Some(point);
            if self.ids.len() == self.content {
                self.emit_block(point, emit)?;
            }
        }
        self.started = true;
        if self.mode == Packing::Document && !self.ids.is_empty() {
            let point = ResumePoint {
                ordinal,
                unit: total as u64,
                separator,
            };
            self.emit_block(point, emit)?;
        }
        Ok(())
    }

    /// Emits the last, shorter sequence of `concat` packing, if any.
    pub fn finish<E>(
        &mut self,
        emit: &mut impl FnMut(Block, ResumePoint) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.ids.is_empty() {
            let point = self.last.unwrap_or(ResumePoint {
                ordinal: 0,
                unit: 0,
                separator: false,
            });
            self.emit_block(point, emit)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLS: u32 = 1000;
    const SEP: u32 = 1001;

    /// Documents as ids 0..: doc i has `lens[i]` tokens, a word every 2 tokens.
    fn docs(lens: &[usize]) -> Vec<(Vec<u32>, Vec<bool>)> {
        let mut next = 0;
        lens.iter()
            .map(|&n| {
                let ids: Vec<u32> = (next..next + n as u32).collect();
                next += n as u32;
                let starts = (0..n).map(|i| i % 2 == 0).collect();
                (ids, starts)
            })
            .collect()
    }

    fn pack(mode: Packing, len: usize, lens: &[usize]) -> Vec<(Block, ResumePoint)> {
        let mut out = Vec::new();
        let mut p = Packer::new(mode, len, CLS, SEP);
        let mut emit = |b, r| -> Result<(), ()> {
            out.push((b, r));
            Ok(())
        };
        for (i, (ids, starts)) in docs(lens).iter().enumerate() {
            p.push(i as u64, ids, starts, None, None, &mut emit)
                .unwrap();
        }
        p.finish(&mut emit).unwrap();
        out
    }

    #[test]
    fn unit_starts_follow_the_word_start_border_rules() {
        // Doc 0: words 0 1 | 2, units (a phrase over both words) 0 1 2; doc 1: 3 | 4.
        let docs = [
            (
                vec![0, 1, 2],
                vec![true, false, true],
                vec![true, false, false],
            ),
            (vec![3, 4], vec![true, true], vec![true, true]),
        ];
        let mut out = Vec::new();
        let mut p = Packer::new(Packing::Concat, 5, CLS, SEP).with_units();
        let mut emit = |b: Block, _| -> Result<(), ()> {
            out.push(b);
            Ok(())
        };
        for (i, (ids, starts, units)) in docs.iter().enumerate() {
            p.push(i as u64, ids, starts, Some(units), None, &mut emit)
                .unwrap();
        }
        p.finish(&mut emit).unwrap();
        // Stream 0 1 2 S 3 4 in blocks of 3: the phrase stays one unit, the separator and the
        // first content token of a block start units, as they start words.
        let units: Vec<Vec<bool>> = out.iter().map(|b| b.unit_starts.clone().unwrap()).collect();
        assert_eq!(
            units,
            [
                vec![true, true, false, false, true],
                vec![true, true, true, true, true]
            ]
        );
        let words: Vec<Vec<bool>> = out.iter().map(|b| b.word_starts.clone()).collect();
        assert_eq!(words[0], vec![true, true, false, true, true]);
        // A packer without units emits none.
        let plain = pack(Packing::Concat, 6, &[3]);
        assert!(plain[0].0.unit_starts.is_none());
    }

    #[test]
    fn concat_matches_the_definition() {
        let out = pack(Packing::Concat, 6, &[3, 5, 1]);
        let ids: Vec<Vec<u32>> = out.iter().map(|(b, _)| b.input_ids.clone()).collect();
        // stream: 0 1 2 S 3 4 5 6 7 S 8 -> blocks of 4
        assert_eq!(
            ids,
            [
                vec![CLS, 0, 1, 2, SEP, SEP],
                vec![CLS, 3, 4, 5, 6, SEP],
                vec![CLS, 7, SEP, 8, SEP]
            ]
        );
        let starts: Vec<Vec<bool>> = out.iter().map(|(b, _)| b.word_starts.clone()).collect();
        assert_eq!(
            starts,
            [
                vec![true, true, false, true, true, true],
                // token 3 starts doc 2; 4 continues; 5 starts a word; 6 continues
                vec![true, true, false, true, false, true],
                // 7 starts the block (forced), then the separator, then doc 3
                vec![true, true, true, true, true]
            ]
        );
    }

    #[test]
    fn document_mode_windows_each_document() {
        let out = pack(Packing::Document, 5, &[7, 2]);
        let ids: Vec<Vec<u32>> = out.iter().map(|(b, _)| b.input_ids.clone()).collect();
        assert_eq!(
            ids,
            [
                vec![CLS, 0, 1, 2, SEP],
                vec![CLS, 3, 4, 5, SEP],
                vec![CLS, 6, SEP],
                vec![CLS, 7, 8, SEP]
            ]
        );
        // The second window starts mid-word (token 3 continues 2's word): forced start.
        assert_eq!(out[1].0.word_starts, [true, true, true, false, true]);
    }

    #[test]
    fn every_token_once_in_order_for_many_shapes() {
        for mode in [Packing::Concat, Packing::Document] {
            for len in [3, 4, 7, 16] {
                let lens = [1, 9, 2, 30, 5, 5, 1, 14];
                let out = pack(mode, len, &lens);
                let mut content = Vec::new();
                for (b, _) in &out {
                    assert!(b.input_ids.len() <= len && b.input_ids.len() >= 3);
                    assert_eq!(b.input_ids[0], CLS);
                    assert_eq!(*b.input_ids.last().unwrap(), SEP);
                    content.extend(
                        b.input_ids[1..b.input_ids.len() - 1]
                            .iter()
                            .copied()
                            .filter(|&t| t != SEP),
                    );
                }
                let total: usize = lens.iter().sum();
                assert_eq!(
                    content,
                    (0..total as u32).collect::<Vec<_>>(),
                    "{mode:?} {len}"
                );
                if mode == Packing::Concat {
                    // All blocks but the last are full.
                    assert!(
                        out[..out.len() - 1]
                            .iter()
                            .all(|(b, _)| b.input_ids.len() == len)
                    );
                }
            }
        }
    }

    #[test]
    fn resuming_at_any_emitted_point_gives_the_same_rest() {
        for mode in [Packing::Concat, Packing::Document] {
            let lens = [3, 11, 1, 6, 9];
            let full = pack(mode, 6, &lens);
            let all_docs = docs(&lens);
            for cut in 0..full.len() {
                let point = full[cut].1;
                let mut rest = Vec::new();
                let mut p = Packer::resumed(mode, 6, CLS, SEP, point);
                let mut emit = |b, _| -> Result<(), ()> {
                    rest.push(b);
                    Ok(())
                };
                for (i, (ids, starts)) in all_docs.iter().enumerate().skip(point.ordinal as usize) {
                    p.push(i as u64, ids, starts, None, Some(point), &mut emit)
                        .unwrap();
                }
                p.finish(&mut emit).unwrap();
                let expected: Vec<Block> = full[cut + 1..].iter().map(|(b, _)| b.clone()).collect();
                assert_eq!(rest, expected, "{mode:?} cut after block {cut}");
            }
        }
    }
}
