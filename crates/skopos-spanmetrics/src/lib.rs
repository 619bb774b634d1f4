//! Metrics derived from spans, as Tempo's metrics-generator makes them: RED
//! span metrics and the service graph. Sans-I/O: fed `SpanBatch`es, asked
//! for a `WriteBatch` of cumulative series.
