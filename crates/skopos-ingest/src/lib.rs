//! skopos-ingest (placeholder).
