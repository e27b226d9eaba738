//! The fast structural checks of [`crate::Level::Fast`]: a `.safetensors` file's JSON header
//! must parse and its tensors must end exactly at the end of the file (the layout the
//! safetensors format specifies); a `.parquet` file must start and end with `PAR1` and its
//! footer length must fit the file (the Parquet file layout). Other files have no header.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::IntegrityError;

/// Checks the header of `path` (`size` bytes) by its extension.
pub(crate) fn check(path: &Path, size: u64) -> Result<(), IntegrityError> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let outcome = match extension {
        "safetensors" => safetensors(path, size),
        "parquet" => parquet(path, size),
        _ => return Ok(()),
    };
    outcome.map_err(|what| IntegrityError::Header {
        path: path.to_path_buf(),
        what,
    })
}

fn safetensors(path: &Path, size: u64) -> Result<(), String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut length = [0u8; 8];
    file.read_exact(&mut length)
        .map_err(|_| "shorter than a safetensors header".to_owned())?;
    let header_len = u64::from_le_bytes(length);
    if header_len > size.saturating_sub(8) {
        return Err(format!(
            "its safetensors header claims {header_len} bytes, the file has {size}"
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|e| e.to_string())?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| format!("its safetensors header is not valid JSON ({e})"))?;
    let data_end = header
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .filter_map(|(_, tensor)| tensor["data_offsets"][1].as_u64())
        .max()
        .unwrap_or(0);
    if 8 + header_len + data_end != size {
        return Err(format!(
            "its tensors end at byte {}, the file has {size}",
            8 + header_len + data_end
        ));
    }
    Ok(())
}

fn parquet(path: &Path, size: u64) -> Result<(), String> {
    const MAGIC: &[u8; 4] = b"PAR1";
    if size < 12 {
        return Err("shorter than a Parquet file".to_owned());
    }
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut head = [0u8; 4];
    file.read_exact(&mut head).map_err(|e| e.to_string())?;
    let mut tail = [0u8; 8];
    file.seek(SeekFrom::End(-8))
        .and_then(|_| file.read_exact(&mut tail))
        .map_err(|e| e.to_string())?;
    if &head != MAGIC || &tail[4..] != MAGIC {
        return Err("no PAR1 magic at its start and end (not a whole Parquet file)".to_owned());
    }
    let footer = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if footer + 12 > size {
        return Err(format!(
            "its Parquet footer claims {footer} bytes, the file has {size}"
        ));
    }
    Ok(())
}
