//! Objects encrypted in the stream: ChaCha20-Poly1305 in the STREAM construction (the `aead`
//! crate's `StreamBE32`), in segments of 64 KiB, so neither side holds more than a segment
//! and a range of the plaintext is read by fetching only the segments that hold it.
//!
//! ```text
//! header   "ARCAENC1" | key id (8 bytes) | salt (32 random bytes)
//! segment  ciphertext of 64 KiB of plaintext | Poly1305 tag (16 bytes)    (repeated)
//! last     ciphertext of the rest (0 to 64 KiB) | tag, sealed as the last segment
//! ```
//!
//! Each object has its own key, HKDF-SHA256 of the location's key with the salt, bound to the
//! object's key in the store: an object copied to another key does not decrypt there. The
//! last segment is sealed as such, so a truncated object fails when read to its end.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit,
    aead::stream::{NewStream, StreamBE32, StreamPrimitive},
};
use futures::StreamExt;
use hkdf::Hkdf;
use sha2::Sha256;
use tokio::io::AsyncReadExt;

use super::keys::{Key, KeyId, KeyRing};
use crate::{ObjectReader, ObjectWriter, StoreError};

/// What starts every encrypted object.
pub const MAGIC: &[u8; 8] = b"ARCAENC1";
/// Plaintext bytes per segment.
pub const SEGMENT: usize = 64 * 1024;
const TAG: usize = 16;
const SALT: usize = 32;
/// Bytes of the header.
pub const HEADER: usize = MAGIC.len() + 8 + SALT;
const CIPHER_SEGMENT: usize = SEGMENT + TAG;

/// The cipher of one object.
pub(crate) struct ObjectCipher {
    stream: StreamBE32<ChaCha20Poly1305>,
}

impl ObjectCipher {
    fn new(key: &Key, salt: &[u8; SALT], object_key: &str) -> Self {
        let mut derived = [0u8; 32];
        let mut info = b"arca object v1\n".to_vec();
        info.extend_from_slice(object_key.as_bytes());
        // Expanding 32 bytes cannot fail.
        let _ = Hkdf::<Sha256>::new(Some(salt), key.bytes()).expand(&info, &mut derived);
        let aead = ChaCha20Poly1305::new(&derived.into());
        // Every object has a key of its own: a fixed nonce prefix never repeats under a key.
        let stream = StreamBE32::from_aead(aead, &Default::default());
        Self { stream }
    }

    fn seal(&self, index: u32, last: bool, plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut buffer = plain.to_vec();
        self.stream
            .encrypt_in_place(index, last, b"", &mut buffer)
            .map_err(|_| StoreError::Config("encrypting a segment failed".into()))?;
        Ok(buffer)
    }

    fn open(&self, index: u32, last: bool, sealed: &[u8]) -> Option<Vec<u8>> {
        let mut buffer = sealed.to_vec();
        self.stream
            .decrypt_in_place(index, last, b"", &mut buffer)
            .ok()
            .map(|()| buffer)
    }
}

/// A new object's header and cipher, under `key`.
fn start(key: &Key, object_key: &str) -> (Vec<u8>, ObjectCipher) {
    let mut salt = [0u8; SALT];
    rand::Rng::fill(&mut rand::rng(), &mut salt);
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&key.id().to_bytes());
    header.extend_from_slice(&salt);
    (header, ObjectCipher::new(key, &salt, object_key))
}

/// The cipher of a stored object, from its header and the keys of `ring`.
pub(crate) fn open_header(
    ring: &KeyRing,
    object_key: &str,
    header: &[u8],
) -> Result<ObjectCipher, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        key: object_key.into(),
        detail,
    };
    if header.len() < HEADER || &header[..MAGIC.len()] != MAGIC {
        return Err(corrupt(
            "it is not encrypted by Arca (no ARCAENC1 header), though its backup says it is".into(),
        ));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&header[8..16]);
    let id = KeyId::from_bytes(&id);
    let key = ring.find(&id).ok_or_else(|| StoreError::Decrypt {
        key: object_key.into(),
        detail: format!(
            "it is encrypted with key {id}, which {} does not hold (it holds {}): add that key to the Secret",
            ring.source(),
            ring.ids().join(", ")
        ),
    })?;
    let mut salt = [0u8; SALT];
    salt.copy_from_slice(&header[16..HEADER]);
    Ok(ObjectCipher::new(key, &salt, object_key))
}

/// Decrypts an encrypted object written into it, into `out` (synchronous: for a download
/// streamed chunk by chunk). An object that does not start with [`MAGIC`] passes through
/// unchanged (a location without encryption).
pub struct DecryptingSink<W: std::io::Write> {
    ring: Option<KeyRing>,
    object_key: String,
    out: W,
    state: SinkState,
}

impl<W: std::io::Write> std::fmt::Debug for DecryptingSink<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptingSink")
            .field("object_key", &self.object_key)
            .finish_non_exhaustive()
    }
}

enum SinkState {
    Header(Vec<u8>),
    Plain,
    Segments {
        cipher: ObjectCipher,
        index: u32,
        pending: Vec<u8>,
    },
}

impl<W: std::io::Write> DecryptingSink<W> {
    /// `object_key` is the object's key relative to the store it was written through
    /// (`backups/<name>/logs.jsonl.zst`); `ring` the keys of its location, if any.
    pub fn new(ring: Option<KeyRing>, object_key: &str, out: W) -> Self {
        Self {
            ring,
            object_key: object_key.into(),
            out,
            state: SinkState::Header(Vec::with_capacity(HEADER)),
        }
    }

    fn failed(&self, detail: &str) -> std::io::Error {
        std::io::Error::other(StoreError::Decrypt {
            key: self.object_key.clone(),
            detail: detail.into(),
        })
    }

    /// Ends the object: its last segment must authenticate as the last one.
    pub fn finish(mut self) -> std::io::Result<W> {
        match std::mem::replace(&mut self.state, SinkState::Plain) {
            SinkState::Header(bytes) if bytes.len() < MAGIC.len() || !bytes.starts_with(MAGIC) => {
                self.out.write_all(&bytes)?;
            }
            SinkState::Header(_) => return Err(self.failed("it ends inside its header")),
            SinkState::Plain => {}
            SinkState::Segments {
                cipher,
                index,
                pending,
            } => {
                let plain = cipher.open(index, true, &pending).ok_or_else(|| {
                    self.failed("its last segment does not authenticate as the last one: the object was cut short or changed")
                })?;
                self.out.write_all(&plain)?;
            }
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: std::io::Write> std::io::Write for DecryptingSink<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        loop {
            match &mut self.state {
                SinkState::Plain => {
                    self.out.write_all(rest)?;
                    return Ok(buf.len());
                }
                SinkState::Header(header) => {
                    let take = (HEADER - header.len()).min(rest.len());
                    header.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if header.len() >= MAGIC.len() && !header.starts_with(MAGIC) {
                        let bytes = std::mem::take(header);
                        self.state = SinkState::Plain;
                        self.out.write_all(&bytes)?;
                        continue;
                    }
                    if header.len() < HEADER {
                        return Ok(buf.len());
                    }
                    let header = std::mem::take(header);
                    let ring = self.ring.as_ref().ok_or_else(|| {
                        self.failed("it is encrypted, and its location names no encryption key (spec.encryption.keySecretRef)")
                    })?;
                    let cipher = open_header(ring, &self.object_key, &header)
                        .map_err(std::io::Error::other)?;
                    self.state = SinkState::Segments {
                        cipher,
                        index: 0,
                        pending: Vec::with_capacity(2 * CIPHER_SEGMENT),
                    };
                }
                SinkState::Segments {
                    cipher,
                    index,
                    pending,
                } => {
                    pending.extend_from_slice(rest);
                    // A segment is known not to be the last once more bytes follow it.
                    while pending.len() > CIPHER_SEGMENT {
                        let sealed: Vec<u8> = pending.drain(..CIPHER_SEGMENT).collect();
                        let Some(plain) = cipher.open(*index, false, &sealed) else {
                            return Err(self.failed(
                                "a segment does not authenticate: the object was changed",
                            ));
                        };
                        *index = index.saturating_add(1);
                        self.out.write_all(&plain)?;
                    }
                    return Ok(buf.len());
                }
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Segments being encrypted on blocking threads while the next ones arrive: the writer's
/// task hashes and indexes the next frame meanwhile (two cores: the encryption of a 100k-item
/// archive would otherwise add to the backup's time).
const IN_FLIGHT: usize = 2;

/// Encrypts everything `inner` is given.
pub(crate) struct EncryptingWriter {
    inner: Box<dyn ObjectWriter>,
    cipher: std::sync::Arc<ObjectCipher>,
    buffer: BytesMut,
    index: u32,
    plain_bytes: u64,
    /// Batches of sealed segments, in order.
    in_flight: std::collections::VecDeque<tokio::task::JoinHandle<Result<Vec<u8>, StoreError>>>,
}

impl EncryptingWriter {
    pub(crate) async fn start(
        mut inner: Box<dyn ObjectWriter>,
        key: &Key,
        object_key: &str,
    ) -> Result<Self, StoreError> {
        let (header, cipher) = start(key, object_key);
        if let Err(e) = inner.write(Bytes::from(header)).await {
            inner.abort().await;
            return Err(e);
        }
        Ok(Self {
            inner,
            cipher: std::sync::Arc::new(cipher),
            buffer: BytesMut::with_capacity(SEGMENT),
            index: 0,
            plain_bytes: 0,
            in_flight: std::collections::VecDeque::new(),
        })
    }

    /// Reserves `count` segment numbers; returns the first.
    fn next_indices(&mut self, count: usize) -> Result<u32, StoreError> {
        let first = self.index;
        self.index = u32::try_from(count)
            .ok()
            .and_then(|n| self.index.checked_add(n))
            .ok_or_else(|| {
                StoreError::Config("an encrypted object is limited to 256 TiB".into())
            })?;
        Ok(first)
    }

    /// Writes the oldest batch once it is sealed.
    async fn write_oldest(&mut self) -> Result<(), StoreError> {
        if let Some(batch) = self.in_flight.pop_front() {
            let sealed = batch
                .await
                .map_err(|e| StoreError::Config(format!("the encryption task failed: {e}")))??;
            self.inner.write(Bytes::from(sealed)).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ObjectWriter for EncryptingWriter {
    async fn write(&mut self, mut chunk: Bytes) -> Result<(), StoreError> {
        self.plain_bytes += chunk.len() as u64;
        // The segments this chunk completes are sealed together on a blocking thread.
        let mut batch = BytesMut::new();
        while !chunk.is_empty() {
            // A full segment is sealed only once more data follows: the last one is sealed
            // as the last by `finish`, even when it is full.
            if self.buffer.len() == SEGMENT {
                batch.extend_from_slice(&self.buffer);
                self.buffer.clear();
            }
            let take = (SEGMENT - self.buffer.len()).min(chunk.len());
            self.buffer.extend_from_slice(&chunk.split_to(take));
        }
        if batch.is_empty() {
            return Ok(());
        }
        let first = self.next_indices(batch.len() / SEGMENT)?;
        let cipher = self.cipher.clone();
        self.in_flight
            .push_back(tokio::task::spawn_blocking(move || {
                let mut sealed = Vec::with_capacity(batch.len() + batch.len() / SEGMENT * TAG);
                for (n, segment) in batch.chunks(SEGMENT).enumerate() {
                    let index = first.saturating_add(n as u32);
                    sealed.extend(cipher.seal(index, false, segment)?);
                }
                Ok(sealed)
            }));
        while self.in_flight.len() > IN_FLIGHT {
            self.write_oldest().await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<u64, StoreError> {
        while !self.in_flight.is_empty() {
            self.write_oldest().await?;
        }
        let index = self.next_indices(1)?;
        let sealed = self.cipher.seal(index, true, &self.buffer)?;
        self.inner.write(Bytes::from(sealed)).await?;
        self.inner.finish().await?;
        Ok(self.plain_bytes)
    }

    async fn abort(self: Box<Self>) {
        for batch in &self.in_flight {
            batch.abort();
        }
        self.inner.abort().await;
    }
}

/// A whole small object, encrypted.
pub(crate) fn encrypt_whole(
    key: &Key,
    object_key: &str,
    plain: &[u8],
) -> Result<Bytes, StoreError> {
    let (mut out, cipher) = start(key, object_key);
    let mut segments = plain.chunks(SEGMENT).peekable();
    let mut index = 0u32;
    if segments.peek().is_none() {
        out.extend(cipher.seal(0, true, b"")?);
    }
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        out.extend(cipher.seal(index, last, segment)?);
        index = index.saturating_add(1);
    }
    Ok(Bytes::from(out))
}

/// The ciphertext range that holds plaintext `range` (header excluded), and the index of
/// its first segment.
pub(crate) fn cipher_range(range: &Range<u64>) -> (Range<u64>, u64) {
    let first = range.start / SEGMENT as u64;
    let end_segment = range.end.max(range.start + 1).div_ceil(SEGMENT as u64);
    let at = |segment: u64| HEADER as u64 + segment * CIPHER_SEGMENT as u64;
    (at(first)..at(end_segment), first)
}

/// Decrypts a stream of segments that starts at segment `first`. With `to_the_end`, the
/// stream reaches the object's end, whose last segment must be sealed as the last one (a
/// truncated object fails); otherwise the final segment read may be either.
pub(crate) fn decrypting(
    inner: ObjectReader,
    cipher: ObjectCipher,
    object_key: String,
    first: u64,
    to_the_end: bool,
) -> ObjectReader {
    struct State {
        inner: ObjectReader,
        cipher: ObjectCipher,
        key: String,
        index: u64,
        pending: Option<Vec<u8>>,
        done: bool,
    }
    let state = State {
        inner,
        cipher,
        key: object_key,
        index: first,
        pending: None,
        done: false,
    };
    let segments = futures::stream::unfold(state, move |mut s| async move {
        if s.done {
            return None;
        }
        let result = next_segment(&mut s.inner, &mut s.pending).await;
        let (current, more) = match result {
            Ok(Some(pair)) => pair,
            Ok(None) => return None,
            Err(e) => {
                s.done = true;
                return Some((Err(e), s));
            }
        };
        let failed = |detail: &str| {
            std::io::Error::other(StoreError::Decrypt {
                key: s.key.clone(),
                detail: detail.into(),
            })
        };
        let Ok(index) = u32::try_from(s.index) else {
            s.done = true;
            return Some((Err(failed("it has more segments than Arca writes")), s));
        };
        let plain = if more {
            s.cipher.open(index, false, &current)
        } else if to_the_end {
            s.cipher.open(index, true, &current)
        } else {
            s.cipher
                .open(index, false, &current)
                .or_else(|| s.cipher.open(index, true, &current))
        };
        s.index += 1;
        match plain {
            Some(plain) => {
                if !more {
                    s.done = true;
                }
                Some((Ok(Bytes::from(plain)), s))
            }
            None => {
                s.done = true;
                let detail = if more || !to_the_end {
                    "a segment does not authenticate: the object was changed, or encrypted with another key of the same id"
                } else {
                    "its last segment does not authenticate as the last one: the object was cut short or changed"
                };
                Some((Err(failed(detail)), s))
            }
        }
    });
    Box::pin(tokio_util::io::StreamReader::new(segments.boxed()))
}

/// The next sealed segment, and whether another follows (one segment of look-ahead).
async fn next_segment(
    inner: &mut ObjectReader,
    pending: &mut Option<Vec<u8>>,
) -> std::io::Result<Option<(Vec<u8>, bool)>> {
    let current = match pending.take() {
        Some(segment) => segment,
        None => {
            let segment = read_segment(inner).await?;
            if segment.is_empty() {
                return Ok(None);
            }
            segment
        }
    };
    if current.len() < CIPHER_SEGMENT {
        return Ok(Some((current, false)));
    }
    let next = read_segment(inner).await?;
    if next.is_empty() {
        return Ok(Some((current, false)));
    }
    *pending = Some(next);
    Ok(Some((current, true)))
}

/// Up to one sealed segment (fewer bytes only at the end).
async fn read_segment(inner: &mut ObjectReader) -> std::io::Result<Vec<u8>> {
    let mut segment = Vec::with_capacity(CIPHER_SEGMENT);
    (&mut *inner)
        .take(CIPHER_SEGMENT as u64)
        .read_to_end(&mut segment)
        .await?;
    Ok(segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new(Key::from_bytes([5; 32]), vec![], "Secret ns/enc")
    }

    async fn read_all(reader: ObjectReader) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut reader = reader;
        reader.read_to_end(&mut out).await?;
        Ok(out)
    }

    fn open_whole(ring: &KeyRing, key: &str, sealed: &[u8]) -> std::io::Result<Vec<u8>> {
        let cipher = open_header(ring, key, sealed).map_err(std::io::Error::other)?;
        let body: ObjectReader = Box::pin(std::io::Cursor::new(sealed[HEADER..].to_vec()));
        futures::executor::block_on(read_all(decrypting(body, cipher, key.into(), 0, true)))
    }

    #[test]
    fn whole_objects_of_every_size_around_a_segment_come_back() {
        let ring = ring();
        for size in [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT] {
            let plain: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let sealed = encrypt_whole(ring.current(), "k", &plain).expect("sealed");
            assert_eq!(
                open_whole(&ring, "k", &sealed).expect("opens"),
                plain,
                "{size}"
            );
        }
    }

    #[test]
    fn an_object_moved_cut_or_changed_does_not_decrypt() {
        let ring = ring();
        let plain = vec![9u8; 2 * SEGMENT + 10];
        let sealed = encrypt_whole(ring.current(), "backups/a/x", &plain).expect("sealed");
        assert!(open_whole(&ring, "backups/b/x", &sealed).is_err(), "moved");
        let cut = &sealed[..HEADER + 2 * CIPHER_SEGMENT];
        let e = open_whole(&ring, "backups/a/x", cut).expect_err("cut");
        assert!(e.to_string().contains("cut short"), "{e}");
        let mut changed = sealed.to_vec();
        changed[HEADER + 5] ^= 1;
        assert!(
            open_whole(&ring, "backups/a/x", &changed).is_err(),
            "changed"
        );
        let other = KeyRing::new(Key::from_bytes([6; 32]), vec![], "Secret ns/other");
        let e = open_header(&other, "backups/a/x", &sealed)
            .err()
            .expect("wrong key");
        assert!(e.to_string().contains("Secret ns/other"), "{e}");
    }

    #[test]
    fn a_download_decrypts_chunk_by_chunk_and_plain_files_pass_through() {
        use std::io::Write;
        let ring = ring();
        let plain: Vec<u8> = (0..2 * SEGMENT + 5).map(|i| (i % 241) as u8).collect();
        let sealed = encrypt_whole(ring.current(), "k", &plain).expect("sealed");
        for chunk in [1, 7, 4096, SEGMENT + 16] {
            let mut sink = DecryptingSink::new(Some(ring.clone()), "k", Vec::new());
            for piece in sealed.chunks(chunk) {
                sink.write_all(piece).expect("write");
            }
            assert_eq!(sink.finish().expect("finish"), plain, "chunks of {chunk}");
        }
        let mut sink = DecryptingSink::new(None, "k", Vec::new());
        sink.write_all(b"{\"plain\": true}").expect("write");
        assert_eq!(sink.finish().expect("finish"), b"{\"plain\": true}");
        let mut sink = DecryptingSink::new(None, "k", Vec::new());
        let e = sink.write_all(&sealed).expect_err("no key");
        assert!(e.to_string().contains("keySecretRef"), "{e}");
        let mut sink = DecryptingSink::new(Some(ring), "k", Vec::new());
        sink.write_all(&sealed[..sealed.len() - 1]).expect("write");
        assert!(sink.finish().is_err(), "cut short");
    }

    #[test]
    fn a_range_is_read_from_its_segments_alone() {
        let ring = ring();
        let plain: Vec<u8> = (0..3 * SEGMENT + 77).map(|i| (i % 253) as u8).collect();
        let sealed = encrypt_whole(ring.current(), "k", &plain).expect("sealed");
        for range in [
            0..10,
            SEGMENT as u64 - 3..SEGMENT as u64 + 3,
            3 * SEGMENT as u64..plain.len() as u64,
        ] {
            let (cipher_range, first) = cipher_range(&range);
            let end = (cipher_range.end as usize).min(sealed.len());
            let body: ObjectReader = Box::pin(std::io::Cursor::new(
                sealed[cipher_range.start as usize..end].to_vec(),
            ));
            let cipher = open_header(&ring, "k", &sealed).expect("header");
            let got = futures::executor::block_on(read_all(decrypting(
                body,
                cipher,
                "k".into(),
                first,
                false,
            )))
            .expect("range");
            let skip = (range.start - first * SEGMENT as u64) as usize;
            let want = &plain[range.start as usize..range.end as usize];
            assert_eq!(&got[skip..skip + want.len()], want, "{range:?}");
        }
    }
}
