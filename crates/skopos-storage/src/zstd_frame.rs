//! Reading back a zstd frame whose plain length a file declares.

/// Why a frame could not be decompressed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The frame's own header disagrees with the length the file declares
    /// (or, for a frame without one, the declared length is implausible).
    #[error("the compressed frame does not hold the {declared} bytes declared for it")]
    SizeMismatch { declared: u64 },
    /// The frame is damaged.
    #[error("{0}")]
    Zstd(std::io::Error),
}

/// Bound on the plain length of a frame that does not record its own.
const UNRECORDED_MAX: u64 = 1 << 28;

/// Decompresses a zstd frame that should hold `declared` bytes, refusing a
/// frame whose own header says otherwise: a damaged length in the file must
/// not become the size of an allocation (found by the `tsdb_block`,
/// `logs_segment` and `traces_segment` fuzz targets: a footer declaring
/// 83 TB aborted the process).
pub fn decompress_declared(z: &[u8], declared: u64) -> Result<Vec<u8>, FrameError> {
    let cap = match zstd::zstd_safe::get_frame_content_size(z) {
        Ok(Some(n)) if n == declared => n,
        // Frames always record their size when skopos writes them; one that
        // does not gets a modest bound.
        Ok(None) if declared <= UNRECORDED_MAX => declared,
        _ => return Err(FrameError::SizeMismatch { declared }),
    };
    let cap = usize::try_from(cap).map_err(|_| FrameError::SizeMismatch { declared })?;
    zstd::bulk::decompress(z, cap).map_err(FrameError::Zstd)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (FUZZING.md): a length declared in the file (here
    /// 1 TB) was the capacity handed to zstd, and the allocation aborted.
    #[test]
    fn a_declared_plain_length_the_frame_does_not_hold_is_corruption_not_an_allocation() {
        let z = zstd::bulk::compress(b"some plain bytes", 3).unwrap();
        assert!(matches!(
            decompress_declared(&z, 1 << 40),
            Err(FrameError::SizeMismatch { declared }) if declared == 1 << 40
        ));
        assert!(decompress_declared(&z, 3).is_err());
        assert_eq!(decompress_declared(&z, 16).unwrap(), b"some plain bytes");
        let empty = zstd::bulk::compress(b"", 3).unwrap();
        assert_eq!(decompress_declared(&empty, 0).unwrap(), b"");
    }
}
