//! Rows of a pull as JSON objects: each column decoded by its type into the JSON value a CEL
//! expression reads as `record.<column>`.
//!
//! | SQL type | JSON |
//! |---|---|
//! | boolean | bool |
//! | integers | number |
//! | float, double | number (null for NaN/∞) |
//! | numeric, decimal | string with the exact decimal (no float rounding) |
//! | text, char, varchar, enum, set, uuid | string |
//! | json, jsonb | the JSON value |
//! | date, time | string (`2026-01-31`, `13:45:00`) |
//! | timestamp (no zone) | string without offset (`2026-01-31T13:45:00.123456`) |
//! | timestamptz | string, RFC 3339 UTC with every fractional digit |
//! | bytea, blob, binary | string, base64 |
//! | SQL NULL | null |
//!
//! Other types are refused with the column's name and type, so the query can cast them
//! (`col::text`). Timestamps keep their full precision: a watermark rounded up could skip rows.

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use sqlx::{Column, Row, TypeInfo};

use super::DatabaseError;

fn undecodable(column: &str, type_name: &str) -> DatabaseError {
    DatabaseError::Schema(format!(
        "column {column:?} has type {type_name}, which the worker does not read; cast it in the query (for example CAST({column} AS text))"
    ))
}

fn float(v: f64) -> Value {
    serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::Null)
}

fn naive_timestamp(t: NaiveDateTime) -> Value {
    Value::String(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string())
}

fn timestamp(t: DateTime<Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

fn bytes(b: Vec<u8>) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(b))
}

macro_rules! get {
    ($row:expr, $i:expr, $t:ty, $name:expr, $map:expr) => {
        $row.try_get::<Option<$t>, _>($i)
            .map_err(|_| DatabaseError::Schema(format!("column {:?} cannot be decoded", $name)))?
            .map($map)
            .unwrap_or(Value::Null)
    };
}

/// A PostgreSQL row as a JSON object.
pub fn postgres_row(row: &sqlx::postgres::PgRow) -> Result<Map<String, Value>, DatabaseError> {
    let mut out = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let name = column.name();
        let type_name = column.type_info().name().to_ascii_uppercase();
        let value = match type_name.as_str() {
            "BOOL" => get!(row, i, bool, name, Value::Bool),
            "INT2" => get!(row, i, i16, name, Value::from),
            "INT4" => get!(row, i, i32, name, Value::from),
            "INT8" => get!(row, i, i64, name, Value::from),
            "OID" => get!(row, i, sqlx::postgres::types::Oid, name, |v| Value::from(v.0)),
            "FLOAT4" => get!(row, i, f32, name, |v| float(f64::from(v))),
            "FLOAT8" => get!(row, i, f64, name, float),
            "NUMERIC" => {
                get!(row, i, rust_decimal::Decimal, name, |v| Value::String(v.to_string()))
            }
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "CITEXT" => {
                get!(row, i, String, name, Value::String)
            }
            "UUID" => get!(row, i, uuid::Uuid, name, |v| Value::String(v.to_string())),
            "JSON" | "JSONB" => get!(row, i, Value, name, |v| v),
            "DATE" => get!(row, i, NaiveDate, name, |v| Value::String(v.to_string())),
            "TIME" => get!(row, i, NaiveTime, name, |v| Value::String(v.to_string())),
            "TIMESTAMP" => get!(row, i, NaiveDateTime, name, naive_timestamp),
            "TIMESTAMPTZ" => get!(row, i, DateTime<Utc>, name, timestamp),
            "BYTEA" => get!(row, i, Vec<u8>, name, bytes),
            other => return Err(undecodable(name, other)),
        };
        out.insert(name.to_string(), value);
    }
    Ok(out)
}

/// A MySQL/MariaDB row as a JSON object.
pub fn mysql_row(row: &sqlx::mysql::MySqlRow) -> Result<Map<String, Value>, DatabaseError> {
    let mut out = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let name = column.name();
        let type_name = column.type_info().name().to_ascii_uppercase();
        let value = match type_name.as_str() {
            "BOOLEAN" => get!(row, i, bool, name, Value::Bool),
            "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => {
                get!(row, i, i64, name, Value::from)
            }
            "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
            | "BIGINT UNSIGNED" | "YEAR" => get!(row, i, u64, name, Value::from),
            "FLOAT" => get!(row, i, f32, name, |v| float(f64::from(v))),
            "DOUBLE" => get!(row, i, f64, name, float),
            "DECIMAL" => {
                get!(row, i, rust_decimal::Decimal, name, |v| Value::String(v.to_string()))
            }
            "CHAR" | "VARCHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM"
            | "SET" => {
                get!(row, i, String, name, Value::String)
            }
            "JSON" => get!(row, i, Value, name, |v| v),
            "DATE" => get!(row, i, NaiveDate, name, |v| Value::String(v.to_string())),
            "TIME" => get!(row, i, NaiveTime, name, |v| Value::String(v.to_string())),
            "DATETIME" => get!(row, i, NaiveDateTime, name, naive_timestamp),
            "TIMESTAMP" => get!(row, i, DateTime<Utc>, name, timestamp),
            "BINARY" | "VARBINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" | "BIT" => {
                get!(row, i, Vec<u8>, name, bytes)
            }
            other => return Err(undecodable(name, other)),
        };
        out.insert(name.to_string(), value);
    }
    Ok(out)
}
