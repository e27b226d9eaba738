//! The records of a zip archive, as `torch.save` writes them (PyTorch's
//! `PyTorchStreamWriter` over miniz: records stored uncompressed, data aligned to 64 bytes by
//! padding in the local headers' extra field). Read from the central directory, zip64
//! included (archives over 4 GiB); only what locating records needs. CRCs are not checked:
//! an interrupted download loses the central directory, which is at the end.

use std::ops::Range;

use crate::ErrorKind;
use crate::bytes::{Reader, hex_prefix};

const EOCD_SIGNATURE: u32 = 0x0605_4b50;
const EOCD_LEN: usize = 22;
const ZIP64_LOCATOR_SIGNATURE: u32 = 0x0706_4b50;
const ZIP64_LOCATOR_LEN: usize = 20;
const ZIP64_EOCD_SIGNATURE: u32 = 0x0606_4b50;
const CENTRAL_SIGNATURE: u32 = 0x0201_4b50;
const LOCAL_SIGNATURE: u32 = 0x0403_4b50;
/// The marker of a 32-bit field whose value is in the zip64 extra field.
const ZIP64_MARK: u32 = u32::MAX;

/// One record: its name, compression method (0: stored) and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) name: String,
    pub(crate) method: u16,
    pub(crate) data: Range<usize>,
}

/// Every record of the archive `data`, in central-directory order.
pub(crate) fn records(data: &[u8]) -> Result<Vec<Record>, ErrorKind> {
    let directory = Directory::find(data)?;
    let mut reader = Reader::new(data, directory.offset);
    let mut records = Vec::new();
    for index in 0..directory.entries {
        records.push(central_entry(data, &mut reader, index)?);
    }
    Ok(records)
}

/// Where the central directory is and how many entries it has.
struct Directory {
    offset: usize,
    entries: u64,
}

impl Directory {
    /// From the end-of-central-directory record (and its zip64 form when the 16- and 32-bit
    /// fields overflow), searched backwards past a comment of up to 64 KiB.
    fn find(data: &[u8]) -> Result<Self, ErrorKind> {
        let missing = || ErrorKind::Zip {
            expected: "an end-of-central-directory record (a zip archive's last bytes)".to_owned(),
            found: "none: the archive is truncated or damaged".to_owned(),
        };
        let last = data.len().checked_sub(EOCD_LEN).ok_or_else(missing)?;
        let first = last.saturating_sub(usize::from(u16::MAX));
        let at = (first..=last)
            .rev()
            .find(|&i| data[i..i + 4] == EOCD_SIGNATURE.to_le_bytes())
            .ok_or_else(missing)?;
        let mut reader = Reader::new(data, at + 10);
        let what = || "the end-of-central-directory record".to_owned();
        let entries = reader.u16(what)?;
        let _size = reader.u32(what)?;
        let offset = reader.u32(what)?;
        if entries == u16::MAX || offset == ZIP64_MARK {
            return Self::zip64(data, at);
        }
        Ok(Self {
            offset: offset as usize,
            entries: u64::from(entries),
        })
    }

    fn zip64(data: &[u8], eocd: usize) -> Result<Self, ErrorKind> {
        let what = || "the zip64 end-of-central-directory locator".to_owned();
        let locator = eocd
            .checked_sub(ZIP64_LOCATOR_LEN)
            .ok_or_else(|| ErrorKind::truncated(what(), ZIP64_LOCATOR_LEN as u64, eocd))?;
        let mut reader = Reader::new(data, locator);
        expect_signature(
            reader.u32(what)?,
            ZIP64_LOCATOR_SIGNATURE,
            "a zip64 locator",
        )?;
        let _disk = reader.u32(what)?;
        let record = to_usize(reader.u64(what)?);
        let what = || "the zip64 end-of-central-directory record".to_owned();
        let mut reader = Reader::new(data, record);
        expect_signature(
            reader.u32(what)?,
            ZIP64_EOCD_SIGNATURE,
            "a zip64 end-of-central-directory record",
        )?;
        reader.take(28, what)?;
        let entries = reader.u64(what)?;
        let _size = reader.u64(what)?;
        let offset = to_usize(reader.u64(what)?);
        Ok(Self { offset, entries })
    }
}

/// Sizes and offsets beyond `usize` are past the end of any file in memory: saturate, and
/// the bounds check that follows reports the truncation.
fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

fn expect_signature(found: u32, expected: u32, what: &str) -> Result<(), ErrorKind> {
    if found == expected {
        return Ok(());
    }
    Err(ErrorKind::Zip {
        expected: format!("{what} (signature {:08x})", expected.swap_bytes()),
        found: hex_prefix(&found.to_le_bytes()),
    })
}

/// One central-directory entry (APPNOTE 4.3.12), and its local header for where the data is.
fn central_entry(data: &[u8], reader: &mut Reader<'_>, index: u64) -> Result<Record, ErrorKind> {
    let what = || format!("zip central directory entry {index}");
    expect_signature(
        reader.u32(what)?,
        CENTRAL_SIGNATURE,
        "a central directory entry",
    )?;
    reader.take(4, what)?; // versions
    let flags = reader.u16(what)?;
    let method = reader.u16(what)?;
    reader.take(8, what)?; // time, date, CRC-32
    let compressed = reader.u32(what)?;
    let uncompressed = reader.u32(what)?;
    let name_len = reader.u16(what)?;
    let extra_len = reader.u16(what)?;
    let comment_len = reader.u16(what)?;
    reader.take(8, what)?; // disk, internal and external attributes
    let local = reader.u32(what)?;
    let name = String::from_utf8_lossy(reader.take(u64::from(name_len), what)?).into_owned();
    let extra = reader.take(u64::from(extra_len), what)?;
    reader.take(u64::from(comment_len), what)?;
    if flags & 1 != 0 {
        return Err(ErrorKind::Zip {
            expected: "unencrypted records".to_owned(),
            found: format!("record {name} encrypted"),
        });
    }
    let (size, local) = zip64_fields(extra, uncompressed, compressed, local, &name)?;
    let data = local_data(data, local, size, &name)?;
    Ok(Record { name, method, data })
}

/// The compressed size and local header offset, from the zip64 extra field (tag 1) where the
/// 32-bit fields hold the marker. Its values come in a fixed order, each only when marked.
fn zip64_fields(
    extra: &[u8],
    uncompressed: u32,
    compressed: u32,
    local: u32,
    name: &str,
) -> Result<(u64, u64), ErrorKind> {
    let (mut size, mut offset) = (u64::from(compressed), u64::from(local));
    if ![uncompressed, compressed, local].contains(&ZIP64_MARK) {
        return Ok((size, offset));
    }
    let what = || format!("the zip64 extra field of record {name}");
    let mut fields = Reader::new(extra, 0);
    while fields.left() > 0 {
        let tag = fields.u16(what)?;
        let len = fields.u16(what)?;
        let body = fields.take(u64::from(len), what)?;
        if tag != 1 {
            continue;
        }
        let mut body = Reader::new(body, 0);
        if uncompressed == ZIP64_MARK {
            body.u64(what)?;
        }
        if compressed == ZIP64_MARK {
            size = body.u64(what)?;
        }
        if local == ZIP64_MARK {
            offset = body.u64(what)?;
        }
        return Ok((size, offset));
    }
    Err(ErrorKind::Zip {
        expected: format!("a zip64 extra field for record {name}"),
        found: "none".to_owned(),
    })
}

/// The bytes of a record: after its local header (whose name and extra field lengths may
/// differ from the central directory's: torch pads the local extra field for alignment).
fn local_data(data: &[u8], local: u64, size: u64, name: &str) -> Result<Range<usize>, ErrorKind> {
    let what = || format!("the local header of record {name}");
    let mut reader = Reader::new(data, to_usize(local));
    expect_signature(reader.u32(what)?, LOCAL_SIGNATURE, "a local file header")?;
    reader.take(22, what)?;
    let name_len = reader.u16(what)?;
    let extra_len = reader.u16(what)?;
    reader.take(u64::from(name_len) + u64::from(extra_len), what)?;
    let start = reader.pos();
    let bytes = reader.take(size, || format!("record {name}"))?;
    Ok(start..start + bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::zip_archive;

    #[test]
    fn finds_stored_records_after_padded_local_headers() {
        let archive = zip_archive(
            &[("a/data.pkl", b"pickle"), ("a/data/0", &[1, 2, 3, 4])],
            64,
        );
        let records = records(&archive).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].name, "a/data.pkl");
        assert_eq!(&archive[records[0].data.clone()], b"pickle");
        assert_eq!(records[1].method, 0);
        assert_eq!(&archive[records[1].data.clone()], &[1, 2, 3, 4]);
        assert_eq!(records[1].data.start % 64, 0, "aligned as torch aligns");
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let archive = zip_archive(&[("a/data.pkl", b"pickle"), ("a/data/0", &[7; 100])], 64);
        for len in 0..archive.len() {
            assert!(records(&archive[..len]).is_err(), "cut at {len}");
        }
        let error = records(&archive[..archive.len() - 1]).unwrap_err();
        assert!(
            error.to_string().contains("truncated or damaged"),
            "{error}"
        );
    }

    #[test]
    fn a_local_header_past_the_end_is_reported_with_the_record_name() {
        let mut archive = zip_archive(&[("a/data/0", &[7; 10])], 0);
        // The central entry's local header offset (at 42 in the entry) pointed far away.
        let central = archive.len() - EOCD_LEN - (46 + "a/data/0".len());
        archive[central + 42..central + 46].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
        let error = records(&archive).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("local header of record a/data/0"),
            "{error}"
        );
    }
}
