//! The zip format of `torch.save` (PyTorch >= 1.6, torch/serialization.py `_save`): records
//! `<dir>/data.pkl` (the pickle), `<dir>/data/<key>` (one per storage, raw bytes),
//! `<dir>/byteorder` (since 2.1; absent means little-endian) and version records. `<dir>` is
//! the saved file's stem (`pytorch_model/`) in recent versions, `archive/` in older ones.

use std::collections::HashMap;
use std::ops::Range;

use crate::ErrorKind;
use crate::pickle::{Unpickled, unpickle};
use crate::zip::{self, Record};

const PICKLE: &str = "data.pkl";

/// The pickle of the archive `data` and the byte range of each storage it declares.
pub(crate) fn read(data: &[u8]) -> Result<(Unpickled, Vec<Range<usize>>), ErrorKind> {
    let records = zip::records(data)?;
    let by_name: HashMap<&str, &Record> = records.iter().map(|r| (r.name.as_str(), r)).collect();
    let pickle = records
        .iter()
        .find(|record| is_top_level_pickle(&record.name))
        .ok_or_else(|| ErrorKind::MissingRecord {
            name: format!("<dir>/{PICKLE}"),
        })?;
    let prefix = &pickle.name[..pickle.name.len() - PICKLE.len()];
    if let Some(order) = by_name.get(format!("{prefix}byteorder").as_str()) {
        let order = String::from_utf8_lossy(&data[stored(order)?]).into_owned();
        if order != "little" {
            return Err(ErrorKind::BigEndian { found: order });
        }
    }
    let unpickled = unpickle(&data[stored(pickle)?], 0, "data.pkl")?;
    let ranges = unpickled
        .storages
        .iter()
        .map(|storage| {
            let name = format!("{prefix}data/{}", storage.key);
            match by_name.get(name.as_str()) {
                Some(record) => stored(record),
                None => Err(ErrorKind::MissingRecord { name }),
            }
        })
        .collect::<Result<_, _>>()?;
    Ok((unpickled, ranges))
}

/// `<dir>/data.pkl`, one directory deep (PyTorchStreamReader's layout).
fn is_top_level_pickle(name: &str) -> bool {
    name.strip_suffix(PICKLE)
        .and_then(|dir| dir.strip_suffix('/'))
        .is_some_and(|dir| !dir.is_empty() && !dir.contains('/'))
}

fn stored(record: &Record) -> Result<Range<usize>, ErrorKind> {
    if record.method != 0 {
        return Err(ErrorKind::Compressed {
            name: record.name.clone(),
            method: record.method,
        });
    }
    Ok(record.data.clone())
}
