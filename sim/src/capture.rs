//! Optional capture of every JSON body and SSE event the twin sends, one JSON line each (for schema checks).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use parking_lot::Mutex;
use serde_json::{Value, json};

/// An append-only JSONL capture file.
#[derive(Debug)]
pub struct Capture {
    file: Mutex<File>,
}

/// Where a captured body came from.
#[derive(Debug, Clone)]
pub struct Origin {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// OpenAPI operationId.
    pub operation: &'static str,
}

impl Capture {
    /// Opens (creates or appends to) `path`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    fn write(&self, line: &Value) {
        let mut s = line.to_string();
        s.push('\n');
        if let Err(e) = self.file.lock().write_all(s.as_bytes()) {
            tracing::warn!(error = %e, "capture write failed");
        }
    }

    /// Records a JSON response body.
    pub fn json(&self, o: &Origin, status: u16, body: &Value) {
        self.write(&json!({"method": o.method, "path": o.path, "operation": o.operation, "status": status, "kind": "json", "body": body}));
    }

    /// Records one SSE event's data.
    pub fn sse(&self, o: &Origin, event: &str, data: &Value) {
        self.write(&json!({"method": o.method, "path": o.path, "operation": o.operation, "status": 200, "kind": "sse", "event": event, "data": data}));
    }
}
