//! Parsing raw `XREAD`/`XREADGROUP` and `XRANGE` replies into
//! [`RawEntry`]s from `redis::Value`, without trusting field names or
//! values.

use redis::Value as RedisValue;

use super::RawEntry;

/// The entries read from one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamEntries {
    /// The stream key.
    pub stream: String,
    /// Its entries, in id order.
    pub entries: Vec<RawEntry>,
}

/// The reply could not be understood at all (not the shape Redis documents).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected reply shape from Redis: {0}")]
#[non_exhaustive]
pub struct ReplyShapeError(pub String);

/// Parses an `XREAD`/`XREADGROUP` reply (RESP2 array or RESP3 map).
/// A nil reply (timeout) is an empty list.
///
/// # Errors
/// When the reply does not have the documented shape.
pub fn parse_read_reply(reply: RedisValue) -> Result<Vec<StreamEntries>, ReplyShapeError> {
    let pairs: Vec<(RedisValue, RedisValue)> = match reply {
        RedisValue::Nil => return Ok(Vec::new()),
        RedisValue::Map(pairs) => pairs,
        RedisValue::Array(items) => items
            .into_iter()
            .map(|item| match item {
                RedisValue::Array(mut kv) if kv.len() == 2 => {
                    let v = kv.pop().unwrap_or(RedisValue::Nil);
                    let k = kv.pop().unwrap_or(RedisValue::Nil);
                    Ok((k, v))
                }
                other => Err(ReplyShapeError(format!("stream item {other:?}"))),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(ReplyShapeError(format!("top level {other:?}"))),
    };
    pairs
        .into_iter()
        .map(|(key, entries)| {
            Ok(StreamEntries {
                stream: bytes_to_string(key)?,
                entries: parse_entries(entries)?,
            })
        })
        .collect()
}

/// Parses a list of entries, as returned by `XRANGE` or inside `XREAD`.
///
/// # Errors
/// When the reply does not have the documented shape.
pub fn parse_entries(value: RedisValue) -> Result<Vec<RawEntry>, ReplyShapeError> {
    let items = match value {
        RedisValue::Nil => return Ok(Vec::new()),
        RedisValue::Array(items) => items,
        other => return Err(ReplyShapeError(format!("entry list {other:?}"))),
    };
    items.into_iter().map(parse_entry).collect()
}

fn parse_entry(value: RedisValue) -> Result<RawEntry, ReplyShapeError> {
    let RedisValue::Array(mut parts) = value else {
        return Err(ReplyShapeError(format!("entry {value:?}")));
    };
    if parts.len() != 2 {
        return Err(ReplyShapeError(format!("entry with {} parts", parts.len())));
    }
    let fields = parts.pop().unwrap_or(RedisValue::Nil);
    let id = bytes_to_string(parts.pop().unwrap_or(RedisValue::Nil))?;
    let fields = match fields {
        RedisValue::Nil => None,
        RedisValue::Array(flat) => {
            let mut out = Vec::with_capacity(flat.len() / 2);
            let mut it = flat.into_iter();
            while let Some(k) = it.next() {
                let v = it.next().unwrap_or(RedisValue::Nil);
                out.push((value_bytes(k), value_bytes(v)));
            }
            Some(out)
        }
        RedisValue::Map(pairs) => Some(
            pairs
                .into_iter()
                .map(|(k, v)| (value_bytes(k), value_bytes(v)))
                .collect(),
        ),
        other => return Err(ReplyShapeError(format!("entry fields {other:?}"))),
    };
    Ok(RawEntry { id, fields })
}

/// Field names and values are binary-safe; keep whatever bytes came.
fn value_bytes(v: RedisValue) -> Vec<u8> {
    match v {
        RedisValue::BulkString(b) => b,
        RedisValue::SimpleString(s) => s.into_bytes(),
        RedisValue::Int(i) => i.to_string().into_bytes(),
        RedisValue::Nil => Vec::new(),
        other => format!("{other:?}").into_bytes(),
    }
}

fn bytes_to_string(v: RedisValue) -> Result<String, ReplyShapeError> {
    match v {
        RedisValue::BulkString(b) => {
            String::from_utf8(b).map_err(|e| ReplyShapeError(format!("non-UTF-8 key or id: {e}")))
        }
        RedisValue::SimpleString(s) => Ok(s),
        other => Err(ReplyShapeError(format!("key or id {other:?}"))),
    }
}

/// Milliseconds part of a stream id (`"1700000000000-3"` gives 1700000000000).
#[must_use]
pub fn id_millis(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}
