//! skopos-server (placeholder).
