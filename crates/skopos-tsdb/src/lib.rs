//! skopos-tsdb: metrics storage (placeholder while the engine is written).
