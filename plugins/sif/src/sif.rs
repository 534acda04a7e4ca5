//! The SIF container format (spec version "01"): global header, descriptor table and object
//! placement, written through a [`Sink`] with the header patched at the end.
//!
//! Layout: a 128-byte header at offset 0, zero fill up to [`DESCRIPTORS_OFFSET`], `capacity`
//! descriptor slots of [`DESCRIPTOR_SIZE`] bytes, then the objects in the order they were added,
//! each at the first offset after the previous one that satisfies its alignment (gaps zeroed).
//! All integers are little-endian.

use crate::error::{Error, Result};
use crate::sink::Sink;

/// Size of the global header.
pub const HEADER_SIZE: usize = 128;
/// Size of one descriptor slot.
pub const DESCRIPTOR_SIZE: usize = 585;
/// Where the descriptor table starts.
pub const DESCRIPTORS_OFFSET: u64 = 4096;
/// Descriptor slots in a new image (the reference library's default).
pub const DEFAULT_CAPACITY: u32 = 48;
/// The launch script Apptainer and SingularityCE write.
pub const LAUNCH_SCRIPT: &str = "#!/usr/bin/env run-singularity\n";
/// Go's zero `time.Time` in Unix seconds: the reference library's deterministic time.
pub const GO_ZERO_TIME: i64 = -62_135_596_800;
/// Group IDs are stored with this bit pattern set; "no group" is the mask alone.
pub const GROUP_MASK: u32 = 0xF000_0000;
/// The SIF media type (ORAS and registries use it for a whole SIF file).
pub const MEDIA_TYPE: &str = "application/vnd.sylabs.sif.layer.v1.sif";

/// Object data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum DataType {
    /// A definition file.
    DefFile = 0x4001,
    /// Environment variables.
    EnvVars = 0x4002,
    /// JSON labels.
    Labels = 0x4003,
    /// A file system partition.
    Partition = 0x4004,
    /// A signature.
    Signature = 0x4005,
    /// Generic JSON.
    GenericJson = 0x4006,
    /// Generic raw bytes.
    Generic = 0x4007,
    /// A cryptographic message.
    CryptoMessage = 0x4008,
    /// A software bill of materials.
    Sbom = 0x4009,
    /// An OCI root index.
    OciRootIndex = 0x400A,
    /// An OCI blob.
    OciBlob = 0x400B,
}

/// Partition file system types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum FsType {
    /// Squashfs.
    Squashfs = 1,
    /// ext3.
    Ext3 = 2,
    /// An immutable object archive.
    ImmuObj = 3,
    /// Raw bytes.
    Raw = 4,
    /// Encrypted squashfs.
    EncryptedSquashfs = 5,
}

/// Partition types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum PartType {
    /// A system partition.
    System = 1,
    /// The primary system partition (the container's root file system).
    PrimSys = 2,
    /// A data partition.
    Data = 3,
    /// A writable overlay.
    Overlay = 4,
}

/// The two-digit architecture code of a Go architecture name ("amd64" → `02`), `None` if unknown.
pub fn arch_code(goarch: &str) -> Option<[u8; 3]> {
    let code = match goarch {
        "386" => "01",
        "amd64" => "02",
        "arm" => "03",
        "arm64" => "04",
        "ppc64" => "05",
        "ppc64le" => "06",
        "mips" => "07",
        "mipsle" => "08",
        "mips64" => "09",
        "mips64le" => "10",
        "s390x" => "11",
        "riscv64" => "12",
        "loong64" => "13",
        _ => return None,
    };
    let b = code.as_bytes();
    Some([b[0], b[1], 0])
}

/// Per-type metadata stored in a descriptor's 384-byte extra field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extra {
    /// Nothing (all zero).
    None,
    /// A partition: file system, partition type and architecture code (`arch_code`).
    Partition {
        /// File system type.
        fs: FsType,
        /// Partition type.
        part: PartType,
        /// Architecture code, e.g. `*b"02\0"`.
        arch: [u8; 3],
    },
    /// An OCI blob or root index: its digest text, `sha256:<hex>`.
    Digest(String),
    /// Raw bytes (at most 384).
    Raw(Vec<u8>),
}

impl Extra {
    fn encode(&self) -> Result<[u8; 384]> {
        let mut out = [0u8; 384];
        match self {
            Extra::None => {}
            Extra::Partition { fs, part, arch } => {
                out[0..4].copy_from_slice(&(*fs as i32).to_le_bytes());
                out[4..8].copy_from_slice(&(*part as i32).to_le_bytes());
                out[8..11].copy_from_slice(arch);
            }
            Extra::Digest(d) => put_text(&mut out, d.as_bytes(), "digest")?,
            Extra::Raw(b) => put_text(&mut out, b, "extra")?,
        }
        Ok(out)
    }
}

fn put_text(dst: &mut [u8], src: &[u8], what: &str) -> Result<()> {
    if src.len() > dst.len() {
        return Err(Error::InvalidInput(format!(
            "SIF {what} is {} bytes, at most {} fit",
            src.len(),
            dst.len()
        )));
    }
    dst[..src.len()].copy_from_slice(src);
    Ok(())
}

/// What to record about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Its data type.
    pub data_type: DataType,
    /// Its name (at most 128 bytes; empty for none).
    pub name: String,
    /// Its group (the library default is 1); `None` for no group.
    pub group: Option<u32>,
    /// The linked object ID, or a group as `group | GROUP_MASK`; 0 for none.
    pub link: u32,
    /// Alignment of its offset (0 or 1 = none). Partitions use 4096.
    pub alignment: u64,
    /// Type-specific metadata.
    pub extra: Extra,
}

impl Object {
    /// An object of `data_type` in group 1, unaligned, unnamed, without extra data.
    pub fn new(data_type: DataType) -> Self {
        Object {
            data_type,
            name: String::new(),
            group: Some(1),
            link: 0,
            alignment: 0,
            extra: Extra::None,
        }
    }

    /// The same object with `name`.
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// A partition in group 1, aligned to 4096 as the library does by default.
    pub fn partition(fs: FsType, part: PartType, arch: [u8; 3]) -> Self {
        Object {
            alignment: 4096,
            extra: Extra::Partition { fs, part, arch },
            ..Object::new(DataType::Partition)
        }
    }
}

/// Image-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Text at offset 0 (at most 31 bytes), e.g. [`LAUNCH_SCRIPT`]; empty for none.
    pub launch_script: String,
    /// The image UUID (all zero in deterministic mode).
    pub uuid: [u8; 16],
    /// Creation and modification time of the image and of every object, in Unix seconds.
    pub time: i64,
    /// Descriptor slots.
    pub capacity: u32,
}

impl Options {
    /// The reference library's deterministic mode: nil UUID, Go zero time, 48 slots, no launch script.
    pub fn deterministic() -> Self {
        Options {
            launch_script: String::new(),
            uuid: [0; 16],
            time: GO_ZERO_TIME,
            capacity: DEFAULT_CAPACITY,
        }
    }

    fn data_offset(&self) -> u64 {
        DESCRIPTORS_OFFSET + self.capacity as u64 * DESCRIPTOR_SIZE as u64
    }
}

#[derive(Debug, Clone)]
struct Placed {
    object: Object,
    id: u32,
    offset: u64,
    size: u64,
    size_with_padding: u64,
}

/// Where an object written with [`SifWriter::begin_object`] landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Its ID (1-based slot number).
    pub id: u32,
    /// Its absolute offset.
    pub offset: u64,
    /// Its size.
    pub size: u64,
}

/// Writes a SIF file: objects are appended as they come; the header and descriptor table are
/// written last, with `write_at`, once every size is known.
#[derive(Debug)]
pub struct SifWriter {
    options: Options,
    placed: Vec<Placed>,
    data_end: u64,
    arch: [u8; 3],
    open: Option<(Object, u64, u64)>,
}

impl SifWriter {
    /// Start a SIF at the sink's current end, which must be offset 0; writes the zero-filled
    /// header and descriptor area.
    pub fn begin(sink: &mut dyn Sink, options: Options) -> Result<Self> {
        if sink.position() != 0 {
            return Err(Error::Internal(format!(
                "a SIF must start at offset 0, the sink is at {}",
                sink.position()
            )));
        }
        if options.launch_script.len() > 31 {
            return Err(Error::InvalidInput(format!(
                "SIF launch script is {} bytes, at most 31 fit",
                options.launch_script.len()
            )));
        }
        if options.capacity == 0 {
            return Err(Error::InvalidInput("a SIF needs at least one descriptor slot".into()));
        }
        let data_offset = options.data_offset();
        sink.write_zeros(data_offset)?;
        Ok(SifWriter {
            options,
            placed: Vec::new(),
            data_end: data_offset,
            arch: *b"00\0",
            open: None,
        })
    }

    fn check_add(&self, object: &Object) -> Result<()> {
        if self.open.is_some() {
            return Err(Error::Internal("a SIF object is still being written".into()));
        }
        if self.placed.len() >= self.options.capacity as usize {
            return Err(Error::InvalidInput(format!(
                "all {} SIF descriptor slots are used",
                self.options.capacity
            )));
        }
        if object.name.len() > 128 {
            return Err(Error::InvalidInput(format!(
                "SIF object name {:?} is longer than 128 bytes",
                object.name
            )));
        }
        if let Extra::Partition {
            part: PartType::PrimSys, ..
        } = object.extra
        {
            let has = self.placed.iter().any(|p| {
                matches!(
                    p.object.extra,
                    Extra::Partition {
                        part: PartType::PrimSys,
                        ..
                    }
                )
            });
            if has {
                return Err(Error::InvalidInput("a SIF holds at most one primary system partition".into()));
            }
        }
        Ok(())
    }

    /// Start an object whose bytes the caller appends to the sink next; writes the alignment gap
    /// and returns the object's offset. Close it with [`SifWriter::end_object`].
    pub fn begin_object(&mut self, sink: &mut dyn Sink, object: Object) -> Result<u64> {
        self.check_add(&object)?;
        if sink.position() != self.data_end {
            return Err(Error::Internal(format!(
                "the sink is at {}, SIF data ends at {}",
                sink.position(),
                self.data_end
            )));
        }
        let offset = align(self.data_end, object.alignment);
        sink.write_zeros(offset - self.data_end)?;
        let gap_start = self.data_end;
        self.open = Some((object, offset, gap_start));
        Ok(offset)
    }

    /// Close the object started by [`SifWriter::begin_object`]: its size is what was appended since.
    pub fn end_object(&mut self, sink: &mut dyn Sink) -> Result<Placement> {
        let (object, offset, gap_start) = self.open.take().ok_or_else(|| Error::Internal("no SIF object is open".into()))?;
        let end = sink.position();
        let size = end.checked_sub(offset).ok_or_else(|| Error::Internal("the sink shrank".into()))?;
        if let Extra::Partition {
            part: PartType::PrimSys,
            arch,
            ..
        } = object.extra
        {
            self.arch = arch;
        }
        let id = self.placed.len() as u32 + 1;
        self.placed.push(Placed {
            object,
            id,
            offset,
            size,
            size_with_padding: end - gap_start,
        });
        self.data_end = end;
        Ok(Placement { id, offset, size })
    }

    /// Append a whole object.
    pub fn add(&mut self, sink: &mut dyn Sink, object: Object, data: &[u8]) -> Result<Placement> {
        self.begin_object(sink, object)?;
        sink.write(data)?;
        self.end_object(sink)
    }

    /// The header bytes as they stand now.
    pub fn header(&self) -> [u8; HEADER_SIZE] {
        let o = &self.options;
        let mut h = [0u8; HEADER_SIZE];
        h[..o.launch_script.len()].copy_from_slice(o.launch_script.as_bytes());
        h[32..42].copy_from_slice(b"SIF_MAGIC\0");
        h[42..45].copy_from_slice(b"01\0");
        h[45..48].copy_from_slice(&self.arch);
        h[48..64].copy_from_slice(&o.uuid);
        let data_offset = o.data_offset();
        let fields: [i64; 8] = [
            o.time,
            o.time,
            o.capacity as i64 - self.placed.len() as i64,
            o.capacity as i64,
            DESCRIPTORS_OFFSET as i64,
            o.capacity as i64 * DESCRIPTOR_SIZE as i64,
            data_offset as i64,
            (self.data_end - data_offset) as i64,
        ];
        for (i, v) in fields.iter().enumerate() {
            h[64 + i * 8..72 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        h
    }

    /// The used descriptor slots, in order.
    pub fn descriptors(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.placed.len() * DESCRIPTOR_SIZE);
        for p in &self.placed {
            let o = &p.object;
            out.extend_from_slice(&(o.data_type as i32).to_le_bytes());
            out.push(1);
            out.extend_from_slice(&p.id.to_le_bytes());
            out.extend_from_slice(&(o.group.unwrap_or(0) | GROUP_MASK).to_le_bytes());
            out.extend_from_slice(&o.link.to_le_bytes());
            for v in [
                p.offset as i64,
                p.size as i64,
                p.size_with_padding as i64,
                self.options.time,
                self.options.time,
                0,
                0,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            let mut name = [0u8; 128];
            put_text(&mut name, o.name.as_bytes(), "object name")?;
            out.extend_from_slice(&name);
            out.extend_from_slice(&o.extra.encode()?);
        }
        Ok(out)
    }

    /// Write the header and the descriptor table at the start of the file. The file ends where
    /// the last object ends.
    pub fn finish(self, sink: &mut dyn Sink) -> Result<Vec<Placement>> {
        if self.open.is_some() {
            return Err(Error::Internal("a SIF object is still being written".into()));
        }
        if sink.position() != self.data_end {
            return Err(Error::Internal(format!(
                "the sink is at {}, SIF data ends at {}",
                sink.position(),
                self.data_end
            )));
        }
        sink.write_at(0, &self.header())?;
        sink.write_at(DESCRIPTORS_OFFSET, &self.descriptors()?)?;
        Ok(self
            .placed
            .iter()
            .map(|p| Placement {
                id: p.id,
                offset: p.offset,
                size: p.size,
            })
            .collect())
    }
}

/// `offset` rounded up to a multiple of `alignment` (0 and 1 mean none).
pub fn align(offset: u64, alignment: u64) -> u64 {
    if alignment <= 1 {
        offset
    } else {
        offset.div_ceil(alignment) * alignment
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::VecSink;

    const FIXTURES: &str = "/work/shared/fixtures/sif";

    fn fixture(name: &str) -> Option<Vec<u8>> {
        std::fs::read(format!("{FIXTURES}/{name}")).ok()
    }

    fn slice(b: &[u8], off: u64, len: usize) -> &[u8] {
        &b[off as usize..off as usize + len]
    }

    #[test]
    fn reproduces_one_group_golden() {
        let Some(golden) = fixture("one-group.sif") else { return };
        let mut sink = VecSink::default();
        let mut w = SifWriter::begin(&mut sink, Options::deterministic()).unwrap();
        let arch = arch_code("386").unwrap();
        w.add(
            &mut sink,
            Object::partition(FsType::Raw, PartType::System, arch),
            slice(&golden, 32768, 4),
        )
        .unwrap();
        w.add(
            &mut sink,
            Object::partition(FsType::Squashfs, PartType::PrimSys, arch),
            slice(&golden, 36864, 4096),
        )
        .unwrap();
        let placed = w.finish(&mut sink).unwrap();
        assert_eq!(
            placed[1],
            Placement {
                id: 2,
                offset: 36864,
                size: 4096
            }
        );
        assert_eq!(sink.bytes.len(), golden.len());
        assert!(sink.bytes == golden, "one-group.sif differs");
    }

    #[test]
    fn reproduces_generic_json_golden() {
        let Some(golden) = fixture("one-object-generic-json.sif") else {
            return;
        };
        let mut sink = VecSink::default();
        let mut w = SifWriter::begin(&mut sink, Options::deterministic()).unwrap();
        w.add(&mut sink, Object::new(DataType::GenericJson).named("data.json"), b"{}")
            .unwrap();
        w.finish(&mut sink).unwrap();
        assert!(sink.bytes == golden, "one-object-generic-json.sif differs");
    }

    #[test]
    fn reproduces_oci_blob_golden() {
        let Some(golden) = fixture("one-object-oci-blob.sif") else { return };
        let blob = slice(&golden, 32176, 847).to_vec();
        let digest_field = slice(&golden, DESCRIPTORS_OFFSET + 201, 384);
        let digest = String::from_utf8(digest_field.iter().copied().take_while(|&b| b != 0).collect()).unwrap();
        assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
        let mut sink = VecSink::default();
        let mut w = SifWriter::begin(&mut sink, Options::deterministic()).unwrap();
        let object = Object {
            extra: Extra::Digest(digest),
            ..Object::new(DataType::OciBlob)
        };
        w.add(&mut sink, object, &blob).unwrap();
        w.finish(&mut sink).unwrap();
        assert!(sink.bytes == golden, "one-object-oci-blob.sif differs");
    }

    #[test]
    fn layout_matches_siftool_example() {
        // sif.md §1.3: a deffile (38 B), a JSON file (14 B) and a 4096-byte partition.
        let mut sink = VecSink::default();
        let opts = Options {
            launch_script: LAUNCH_SCRIPT.into(),
            uuid: [7; 16],
            time: 1_700_000_000,
            capacity: 48,
        };
        let mut w = SifWriter::begin(&mut sink, opts).unwrap();
        let a = w.add(&mut sink, Object::new(DataType::DefFile), &[b'x'; 38]).unwrap();
        let b = w
            .add(&mut sink, Object::new(DataType::GenericJson).named("j.json"), &[b'y'; 14])
            .unwrap();
        let p = Object::partition(FsType::Squashfs, PartType::PrimSys, arch_code("amd64").unwrap());
        let c = w.add(&mut sink, p, &[b'z'; 4096]).unwrap();
        w.finish(&mut sink).unwrap();
        assert_eq!((a.offset, b.offset, c.offset), (32176, 32214, 32768));
        let bytes = &sink.bytes;
        assert_eq!(bytes.len(), 36864);
        assert_eq!(&bytes[..31], LAUNCH_SCRIPT.as_bytes());
        assert_eq!(&bytes[45..48], b"02\0");
        let i64_at = |o: usize| i64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
        assert_eq!(i64_at(80), 45);
        assert_eq!(i64_at(120), 4688);
        // Third descriptor: size with padding covers the alignment gap.
        let d = DESCRIPTORS_OFFSET as usize + 2 * DESCRIPTOR_SIZE;
        assert_eq!(i64_at(d + 33), 4636);
        assert_eq!(u32::from_le_bytes(bytes[d + 9..d + 13].try_into().unwrap()), 0xF000_0001);
        assert!(bytes[128..4096].iter().all(|&b| b == 0));
        assert!(bytes[4096 + 3 * DESCRIPTOR_SIZE..32176].iter().all(|&b| b == 0));
        assert!(bytes[32228..32768].iter().all(|&b| b == 0));
    }

    #[test]
    fn refuses_second_primary_partition_and_overflow() {
        let mut sink = VecSink::default();
        let mut w = SifWriter::begin(
            &mut sink,
            Options {
                capacity: 2,
                ..Options::deterministic()
            },
        )
        .unwrap();
        let p = || Object::partition(FsType::Squashfs, PartType::PrimSys, *b"02\0");
        w.add(&mut sink, p(), b"a").unwrap();
        assert!(matches!(w.add(&mut sink, p(), b"b"), Err(Error::InvalidInput(_))));
        w.add(&mut sink, Object::new(DataType::Generic), b"c").unwrap();
        assert!(matches!(
            w.add(&mut sink, Object::new(DataType::Generic), b"d"),
            Err(Error::InvalidInput(_))
        ));
    }
}
