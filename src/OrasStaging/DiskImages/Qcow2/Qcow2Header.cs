using System.Buffers.Binary;

namespace OrasStaging.DiskImages.Qcow2;

/// <summary>qcow2 compression_type (header byte 104, incompatible bit 3).</summary>
internal enum Qcow2Compression
{
    Zlib = 0,
    Zstd = 1,
}

/// <summary>
/// The qcow2 header (v2 and v3, qemu docs/interop/qcow2.txt) and its extensions, parsed from untrusted bytes.
/// Only the header is checked here; the tables it points at are checked by <see cref="Qcow2Image"/>.
/// Everything this reader cannot honour (backing file, external data, encryption, unknown incompatible bits,
/// dirty or corrupt images) is refused here, before a byte of output exists.
/// </summary>
internal sealed class Qcow2Header
{
    public const uint Magic = 0x514649FB;
    public const int V2Length = 72;

    /// <summary>qemu's own caps (QCOW_MAX_L1_SIZE, QCOW_MAX_REFTABLE_SIZE): nothing qemu writes exceeds them.</summary>
    public const long MaxL1Bytes = 32L << 20;
    public const long MaxReftableBytes = 8L << 20;

    private const ulong IncompatDirty = 1, IncompatCorrupt = 2, IncompatDataFile = 4, IncompatCompression = 8, IncompatExtendedL2 = 16;
    private const ulong KnownIncompat = IncompatDirty | IncompatCorrupt | IncompatDataFile | IncompatCompression | IncompatExtendedL2;

    private const uint ExtEnd = 0, ExtBackingFormat = 0xE2792ACA, ExtFeatureNames = 0x6803F857, ExtBitmaps = 0x23852875,
        ExtEncryption = 0x0537BE77, ExtDataFile = 0x44415441;

    public int Version { get; private init; }
    public int ClusterBits { get; private init; }
    public int ClusterSize => 1 << ClusterBits;
    public long VirtualSize { get; private init; }
    public long L1Entries { get; private init; }
    public long L1Offset { get; private init; }
    public long ReftableOffset { get; private init; }
    public long ReftableClusters { get; private init; }
    public int SnapshotCount { get; private init; }
    public long SnapshotsOffset { get; private init; }
    public ulong CompatibleFeatures { get; private init; }
    public ulong AutoclearFeatures { get; private init; }
    public int RefcountOrder { get; private init; }
    public int HeaderLength { get; private init; }
    public Qcow2Compression Compression { get; private init; }
    public bool ExtendedL2 { get; private init; }

    /// <summary>A persistent-bitmaps extension is present (matters to growth, which refuses it).</summary>
    public bool HasBitmaps { get; private init; }

    /// <summary>Guest bytes one L2 table maps.</summary>
    public long BytesPerL2 => (long)ClusterSize / (ExtendedL2 ? 16 : 8) * ClusterSize;

    public static OrasStagingException Corrupt(string why) => new(ErrorCode.CorruptInput,
        "The qcow2 image is malformed: " + why + ".", "Check the image with 'qemu-img check'; download or rebuild it.");

    public static OrasStagingException Unsupported(string why) => new(ErrorCode.UnsupportedFormat,
        "This qcow2 image uses a feature the native reader does not support: " + why + ".",
        "Flatten it first, e.g. 'qemu-img convert -O qcow2 in.qcow2 out.qcow2'.");

    /// <summary>Parses <paramref name="cluster0"/>: the first min(file length, 2 MiB) bytes of the file.</summary>
    public static Qcow2Header Parse(ReadOnlySpan<byte> cluster0, long fileLength)
    {
        if (cluster0.Length < V2Length)
        {
            throw Corrupt($"the file is {fileLength} bytes, shorter than a qcow2 header");
        }

        if (BinaryPrimitives.ReadUInt32BigEndian(cluster0) != Magic)
        {
            throw Corrupt("the qcow2 magic is missing");
        }

        uint version = U32(cluster0, 4);
        if (version is not (2 or 3))
        {
            throw Unsupported($"qcow2 version {version}");
        }

        uint clusterBits = U32(cluster0, 20);
        if (clusterBits is < 9 or > 21)
        {
            throw Corrupt($"cluster_bits {clusterBits} is outside 9..21");
        }

        int cs = 1 << (int)clusterBits;
        ulong backingOffset = U64(cluster0, 8);
        if (backingOffset != 0)
        {
            throw Unsupported("a backing file (the image is an overlay; its content depends on another file)");
        }

        if (U32(cluster0, 32) != 0)
        {
            throw Unsupported("encryption (crypt_method " + U32(cluster0, 32) + ")");
        }

        ulong incompat = 0, compat = 0, autoclear = 0;
        int refcountOrder = 4, headerLength = V2Length;
        var compression = Qcow2Compression.Zlib;
        if (version == 3)
        {
            if (cluster0.Length < 104)
            {
                throw Corrupt("the v3 header is truncated");
            }

            incompat = U64(cluster0, 72);
            compat = U64(cluster0, 80);
            autoclear = U64(cluster0, 88);
            uint order = U32(cluster0, 96);
            uint length = U32(cluster0, 100);
            if (order > 6)
            {
                throw Corrupt($"refcount_order {order} is above 6");
            }

            if (length < 104 || length > cs || length % 8 != 0 || length > cluster0.Length)
            {
                throw Corrupt($"header_length {length} is not a multiple of 8 between 104 and the cluster size");
            }

            refcountOrder = (int)order;
            headerLength = (int)length;
            if (headerLength > 104)
            {
                byte type = cluster0[104];
                if (type > 1)
                {
                    throw Unsupported($"compression_type {type}");
                }

                compression = (Qcow2Compression)type;
            }

            if ((incompat & ~KnownIncompat) != 0)
            {
                throw Unsupported($"unknown incompatible feature bits 0x{incompat & ~KnownIncompat:X}");
            }

            if ((incompat & IncompatDirty) != 0)
            {
                throw Unsupported("the dirty bit is set (the image was not closed cleanly; 'qemu-img check -r all' repairs it)");
            }

            if ((incompat & IncompatCorrupt) != 0)
            {
                throw Unsupported("the corrupt bit is set (qemu found inconsistent metadata)");
            }

            if ((incompat & IncompatDataFile) != 0)
            {
                throw Unsupported("an external data file (the guest data lives in another file)");
            }

            if (((incompat & IncompatCompression) != 0) != (compression != Qcow2Compression.Zlib))
            {
                throw Corrupt("compression_type and incompatible bit 3 disagree");
            }

            if ((incompat & IncompatExtendedL2) != 0 && clusterBits < 14)
            {
                throw Corrupt("extended L2 entries need clusters of at least 16 KiB");
            }
        }

        long virtualSize = checked((long)Math.Min(U64(cluster0, 24), long.MaxValue));
        long l1Entries = U32(cluster0, 36);
        long l1Offset = (long)Math.Min(U64(cluster0, 40), long.MaxValue);
        long reftableOffset = (long)Math.Min(U64(cluster0, 48), long.MaxValue);
        long reftableClusters = U32(cluster0, 56);
        long snapshots = U32(cluster0, 60);
        long snapshotsOffset = (long)Math.Min(U64(cluster0, 64), long.MaxValue);

        var header = new Qcow2Header
        {
            Version = (int)version,
            ClusterBits = (int)clusterBits,
            VirtualSize = virtualSize,
            L1Entries = l1Entries,
            L1Offset = l1Offset,
            ReftableOffset = reftableOffset,
            ReftableClusters = reftableClusters,
            SnapshotCount = (int)Math.Min(snapshots, int.MaxValue),
            SnapshotsOffset = snapshotsOffset,
            CompatibleFeatures = compat,
            AutoclearFeatures = autoclear,
            RefcountOrder = refcountOrder,
            HeaderLength = headerLength,
            Compression = compression,
            ExtendedL2 = (incompat & IncompatExtendedL2) != 0,
            HasBitmaps = ReadExtensions(cluster0, headerLength, cs),
        };
        header.CheckRanges(fileLength);
        return header;
    }

    /// <summary>Walks the extensions inside cluster 0; returns whether a bitmaps extension is present.</summary>
    private static bool ReadExtensions(ReadOnlySpan<byte> cluster0, int start, int cs)
    {
        int end = Math.Min(cs, cluster0.Length);
        bool bitmaps = false;
        for (int at = start; at + 8 <= end;)
        {
            uint type = U32(cluster0, at);
            uint length = U32(cluster0, at + 4);
            if (type == ExtEnd)
            {
                return bitmaps;
            }

            long next = at + 8L + ((length + 7L) & ~7L);
            if (next > end)
            {
                throw Corrupt($"header extension 0x{type:X8} runs past the first cluster");
            }

            switch (type)
            {
                case ExtEncryption:
                    throw Unsupported("encryption (full disk encryption header)");
                case ExtDataFile:
                    throw Unsupported("an external data file (the guest data lives in another file)");
                case ExtBitmaps:
                    bitmaps = true;
                    break;
                case ExtBackingFormat:
                case ExtFeatureNames:
                default:
                    break; // Informational, or unknown: the spec says unknown extensions are ignored.
            }

            at = (int)next;
        }

        return bitmaps;
    }

    /// <summary>Header-level bounds: every table lies inside the file, after cluster 0, cluster-aligned.</summary>
    private void CheckRanges(long fileLength)
    {
        long cs = ClusterSize;
        if (VirtualSize % 512 != 0)
        {
            throw Corrupt($"the virtual size {VirtualSize} is not a multiple of 512");
        }

        long needed = VirtualSize == 0 ? 0 : 1 + ((VirtualSize - 1) / BytesPerL2);
        if (L1Entries < needed)
        {
            throw Corrupt($"the L1 table has {L1Entries} entries, the virtual size needs {needed}");
        }

        if (L1Entries * 8 > MaxL1Bytes)
        {
            throw Corrupt($"the L1 table ({L1Entries} entries) exceeds 32 MiB");
        }

        if (L1Entries > 0)
        {
            CheckTable("L1 table", L1Offset, L1Entries * 8, fileLength);
        }

        if (ReftableClusters == 0 || ReftableClusters * cs > MaxReftableBytes)
        {
            throw Corrupt($"refcount_table_clusters {ReftableClusters} is 0 or the table exceeds 8 MiB");
        }

        CheckTable("refcount table", ReftableOffset, ReftableClusters * cs, fileLength);
        if (SnapshotCount > 65536)
        {
            throw Corrupt($"{SnapshotCount} snapshots exceed qemu's limit of 65536");
        }

        if (SnapshotCount > 0)
        {
            // Each entry is at least 40 bytes: the table must at least start and fit that much inside the file.
            CheckTable("snapshot table", SnapshotsOffset, SnapshotCount * 40L, fileLength);
        }
    }

    public void CheckTable(string what, long offset, long length, long fileLength)
    {
        if (offset % ClusterSize != 0)
        {
            throw Corrupt($"the {what} offset {offset} is not cluster-aligned");
        }

        if (offset < ClusterSize)
        {
            throw Corrupt($"the {what} overlaps the header");
        }

        if (offset > fileLength || length > fileLength - offset)
        {
            throw Corrupt($"the {what} ({length} bytes at {offset}) lies outside the {fileLength}-byte file");
        }
    }

    private static uint U32(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt32BigEndian(b[at..]);

    private static ulong U64(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt64BigEndian(b[at..]);
}
