//! TensorBoard's event-file format, written by hand: no maintained Rust crate writes it
//! (`tensorboard-rs` was last released in 2020), and the part a run needs is small.
//!
//! A file is a sequence of TFRecords (`tensorflow/core/lib/io/record_writer.cc`): the data's
//! length as a little-endian u64, the masked CRC32C of those 8 bytes, the data, the masked
//! CRC32C of the data. Each record's data is a protobuf `Event`
//! (`tensorboard/compat/proto/event.proto`) carrying a `Summary`
//! (`tensorboard/compat/proto/summary.proto`): a scalar as `simple_value`, as PyTorch's
//! `SummaryWriter.add_scalar` writes it, and text as a string tensor tagged for the text
//! plugin, as `SummaryWriter.add_text` writes it (`torch/utils/tensorboard/summary.py`).

/// `Event.file_version` of the first record of every file, as TensorFlow and PyTorch write it.
pub const FILE_VERSION: &str = "brain.Event:2";

/// The record framing around one serialised `Event`.
pub fn frame_record(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut record = Vec::with_capacity(data.len() + 16);
    record.extend_from_slice(&length);
    record.extend_from_slice(&masked_crc(&length).to_le_bytes());
    record.extend_from_slice(data);
    record.extend_from_slice(&masked_crc(data).to_le_bytes());
    record
}

/// The `Event` data of every intact record of `bytes`, in order. Reading stops at the first
/// record that is cut short or fails its checksum: the torn tail of a crashed writer.
pub fn read_records(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut records = Vec::new();
    while bytes.len() >= 12 {
        let (header, rest) = bytes.split_at(8);
        let length = u64::from_le_bytes(header.try_into().unwrap_or_default());
        let header_crc = u32::from_le_bytes(rest[..4].try_into().unwrap_or_default());
        let Ok(length) = usize::try_from(length) else {
            break;
        };
        if header_crc != masked_crc(header) || rest.len() < 4 + length.saturating_add(4) {
            break;
        }
        let data = &rest[4..4 + length];
        let data_crc =
            u32::from_le_bytes(rest[4 + length..8 + length].try_into().unwrap_or_default());
        if data_crc != masked_crc(data) {
            break;
        }
        records.push(data);
        bytes = &rest[8 + length..];
    }
    records
}

/// CRC32C rotated and offset, so that a CRC of data holding CRCs stays well distributed
/// (`tensorflow/core/lib/hash/crc32c.h`, `Mask`).
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// An `Event` with `wall_time` (seconds since the epoch), `step` and either the file
/// version or a summary.
pub fn event(wall_time: f64, step: u64, body: &EventBody<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    put_fixed64(&mut out, 1, wall_time.to_bits());
    put_varint_field(&mut out, 2, step);
    match body {
        EventBody::FileVersion => put_bytes(&mut out, 3, FILE_VERSION.as_bytes()),
        EventBody::Summary(summary) => put_bytes(&mut out, 5, summary),
    }
    out
}

pub enum EventBody<'a> {
    FileVersion,
    /// A serialised `Summary`.
    Summary(&'a [u8]),
}

/// A `Summary` of one scalar: `value { tag, simple_value }`.
pub fn scalar_summary(tag: &str, value: f32) -> Vec<u8> {
    let mut value_message = Vec::new();
    put_bytes(&mut value_message, 1, tag.as_bytes());
    put_key(&mut value_message, 2, WIRE_FIXED32);
    value_message.extend_from_slice(&value.to_bits().to_le_bytes());
    let mut summary = Vec::new();
    put_bytes(&mut summary, 1, &value_message);
    summary
}

/// A `Summary` of one text (Markdown) for the text plugin: a 1-element string tensor with
/// `metadata.plugin_data.plugin_name = "text"`.
pub fn text_summary(tag: &str, text: &str) -> Vec<u8> {
    let mut plugin_data = Vec::new();
    put_bytes(&mut plugin_data, 1, b"text");
    let mut metadata = Vec::new();
    put_bytes(&mut metadata, 1, &plugin_data);
    let mut dim = Vec::new();
    put_varint_field(&mut dim, 1, 1);
    let mut shape = Vec::new();
    put_bytes(&mut shape, 2, &dim);
    let mut tensor = Vec::new();
    put_varint_field(&mut tensor, 1, DT_STRING);
    put_bytes(&mut tensor, 2, &shape);
    put_bytes(&mut tensor, 8, text.as_bytes());
    let mut value_message = Vec::new();
    put_bytes(&mut value_message, 1, tag.as_bytes());
    put_bytes(&mut value_message, 8, &tensor);
    put_bytes(&mut value_message, 9, &metadata);
    let mut summary = Vec::new();
    put_bytes(&mut summary, 1, &value_message);
    summary
}

/// What a resume needs to know of an event it reads back: its step and the tag of its
/// (first) summary value; `None` for the file-version record or data that does not parse.
pub fn step_and_tag(event: &[u8]) -> Option<(u64, String)> {
    let fields = parse_fields(event)?;
    let step = fields.iter().find_map(|(number, field)| match field {
        Field::Varint(step) if *number == 2 => Some(*step),
        _ => None,
    })?;
    let summary = bytes_field(&fields, 5)?;
    let value = bytes_field(&parse_fields(summary)?, 1)?;
    let tag = bytes_field(&parse_fields(value)?, 1)?;
    Some((step, String::from_utf8_lossy(tag).into_owned()))
}

/// `tensorflow/core/framework/types.proto`.
const DT_STRING: u64 = 7;

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_BYTES: u8 = 2;
const WIRE_FIXED32: u8 = 5;

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_key(out: &mut Vec<u8>, number: u32, wire: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire));
}

fn put_varint_field(out: &mut Vec<u8>, number: u32, value: u64) {
    put_key(out, number, WIRE_VARINT);
    put_varint(out, value);
}

fn put_fixed64(out: &mut Vec<u8>, number: u32, bits: u64) {
    put_key(out, number, WIRE_FIXED64);
    out.extend_from_slice(&bits.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_key(out, number, WIRE_BYTES);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// One decoded protobuf field.
enum Field<'a> {
    Varint(u64),
    /// A fixed-width number (doubles, floats); its value is not needed here.
    Fixed,
    Bytes(&'a [u8]),
}

fn bytes_field<'a>(fields: &[(u32, Field<'a>)], wanted: u32) -> Option<&'a [u8]> {
    fields.iter().find_map(|(number, field)| match field {
        Field::Bytes(bytes) if *number == wanted => Some(*bytes),
        _ => None,
    })
}

/// The top-level fields of a protobuf message, or `None` when it does not parse.
fn parse_fields(mut bytes: &[u8]) -> Option<Vec<(u32, Field<'_>)>> {
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let key = take_varint(&mut bytes)?;
        let number = u32::try_from(key >> 3).ok()?;
        let field = match (key & 7) as u8 {
            WIRE_VARINT => Field::Varint(take_varint(&mut bytes)?),
            WIRE_FIXED64 => take(&mut bytes, 8).map(|_| Field::Fixed)?,
            WIRE_FIXED32 => take(&mut bytes, 4).map(|_| Field::Fixed)?,
            WIRE_BYTES => {
                let length = usize::try_from(take_varint(&mut bytes)?).ok()?;
                Field::Bytes(take(&mut bytes, length)?)
            }
            _ => return None,
        };
        fields.push((number, field));
    }
    Some(fields)
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if bytes.len() < n {
        return None;
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Some(head)
}

fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *take(bytes, 1)?.first()?;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_matches_tensorflow() {
        // The CRC32C check value of "123456789" is 0xe3069283 (RFC 3720, B.4); TensorFlow
        // masks it as ((crc >> 15) | (crc << 17)) + 0xa282ead8.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        // (0xe3069283 >> 15 | 0xe3069283 << 17) + 0xa282ead8, mod 2^32.
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_dropped() {
        let first = event(1.5, 0, &EventBody::FileVersion);
        let summary = scalar_summary("train/loss", 2.5);
        let second = event(2.0, 7, &EventBody::Summary(&summary));
        let mut file = frame_record(&first);
        file.extend(frame_record(&second));
        let whole = file.clone();
        file.extend(&frame_record(&second)[..10]);
        assert_eq!(read_records(&whole), vec![&first[..], &second[..]]);
        assert_eq!(read_records(&file), vec![&first[..], &second[..]]);
        let mut corrupt = whole;
        let last = corrupt.len() - 6;
        corrupt[last] ^= 1;
        assert_eq!(read_records(&corrupt), vec![&first[..]]);
        assert_eq!(step_and_tag(&second), Some((7, "train/loss".to_string())));
        assert_eq!(step_and_tag(&first), None);
        let text = text_summary("config", "a = 1");
        let third = event(3.0, 300, &EventBody::Summary(&text));
        assert_eq!(step_and_tag(&third), Some((300, "config".to_string())));
    }

    #[test]
    fn varints_encode_as_protobuf_does() {
        let mut out = Vec::new();
        put_varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        let mut slice = &out[..];
        assert_eq!(take_varint(&mut slice), Some(300));
        assert!(slice.is_empty());
    }
}
