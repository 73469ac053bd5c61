using System.Buffers.Binary;
using System.Text;

namespace OrasStaging.TestKit;

/// <summary>What a generated raw disk image looks like.</summary>
public enum ImageShape
{
    /// <summary>MBR + GPT, scattered random and text-like data regions, long zero runs, non-zero last sector.</summary>
    Realistic,
    /// <summary>Every byte zero (a fully sparse image).</summary>
    AllZero,
    /// <summary>Every byte pseudo-random (incompressible, no zero cluster).</summary>
    Random,
}

/// <summary>
/// Deterministic raw disk images for tests and benchmarks: the same (size, seed, shape, dataFraction)
/// always gives the same bytes, so a test can regenerate the expected content instead of storing it.
/// </summary>
/// <remarks>
/// Realistic layout, in 64 KiB clusters: cluster 0 holds a protective MBR (0x55AA at 510), the primary GPT
/// header ("EFI PART" at 512) and its 128 partition entries; the last 16.5 KiB hold the backup entries and
/// backup header, so the last sector is never zero. In between, data runs (1–15 clusters) alternate with zero
/// runs sized so that about <c>dataFraction</c> of the clusters hold data. A data cluster is random
/// (incompressible), text-like (log lines, compressible) or mixed (4 KiB blocks of random, text and zeros,
/// which exercises sparse detection below the cluster size).
/// </remarks>
public static class DiskImageGenerator
{
    public const int ClusterSize = 64 * 1024;
    private const int SectorSize = 512;
    private const int BlockSize = 4096;
    private const int PartitionEntryCount = 128;
    private const int PartitionEntrySize = 128;
    private const int EntriesBytes = PartitionEntryCount * PartitionEntrySize; // 16 KiB
    private const int HeaderRegionBytes = 2 * SectorSize + EntriesBytes;       // MBR + GPT header + entries
    private const int TailRegionBytes = EntriesBytes + SectorSize;            // backup entries + backup header

    /// <summary>Writes the image to a stream (zero runs are written as zeros; the stream need not seek).</summary>
    public static void Write(Stream output, long size, int seed, ImageShape shape = ImageShape.Realistic, double dataFraction = 0.33)
    {
        ArgumentNullException.ThrowIfNull(output);
        var zeros = new byte[ClusterSize];
        Generate(size, seed, shape, dataFraction,
            (data) => output.Write(data),
            (count) =>
            {
                while (count > 0)
                {
                    var n = (int)Math.Min(count, zeros.Length);
                    output.Write(zeros, 0, n);
                    count -= n;
                }
            });
        output.Flush();
    }

    /// <summary>Writes the image to a file, seeking over zero runs so the file is sparse where the filesystem allows.</summary>
    public static void WriteFile(string path, long size, int seed, ImageShape shape = ImageShape.Realistic, double dataFraction = 0.33)
    {
        ArgumentNullException.ThrowIfNull(path);
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        Generate(size, seed, shape, dataFraction,
            (data) => file.Write(data),
            (count) => file.Seek(count, SeekOrigin.Current));
        // A trailing zero run was only seeked over; SetLength makes the size real.
        file.SetLength(size);
    }

    private static void Generate(long size, int seed, ImageShape shape, double dataFraction, Action<ReadOnlySpan<byte>> writeData, Action<long> skipZeros)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        if (double.IsNaN(dataFraction) || dataFraction < 0 || dataFraction > 1)
        {
            throw new ArgumentOutOfRangeException(nameof(dataFraction), dataFraction, "dataFraction must be within [0, 1].");
        }
        if (size == 0)
        {
            return;
        }

        long clusters = (size + ClusterSize - 1) / ClusterSize;
        var buffer = new byte[ClusterSize];
        long pendingZeros = 0;

        switch (shape)
        {
            case ImageShape.AllZero:
                skipZeros(size);
                return;
            case ImageShape.Random:
                for (long i = 0; i < clusters; i++)
                {
                    var length = ClusterLength(size, i);
                    var rng = new Rng(Mix(seed, i, 0x52414e44));
                    rng.Fill(buffer.AsSpan(0, length));
                    writeData(buffer.AsSpan(0, length));
                }
                return;
            case ImageShape.Realistic:
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(shape), shape, null);
        }

        var header = BuildHeaderRegion(size, seed);
        var tail = BuildTailRegion(size, seed);
        long tailStart = size - tail.Length;
        var layout = new Layout(seed, dataFraction);

        for (long i = 0; i < clusters; i++)
        {
            var length = ClusterLength(size, i);
            var span = buffer.AsSpan(0, length);
            long start = i * ClusterSize;
            var kind = layout.Next();
            bool any = kind != ClusterKind.Zero;
            if (any)
            {
                FillCluster(span, kind, new Rng(Mix(seed, i, 0x44415441)));
            }

            // The partition tables win over data wherever they overlap.
            if (start < header.Length)
            {
                if (!any) span.Clear();
                var n = (int)Math.Min(header.Length - start, length);
                header.AsSpan((int)start, n).CopyTo(span);
                any = true;
            }
            if (start + length > tailStart)
            {
                if (!any) span.Clear();
                long from = Math.Max(start, tailStart);
                var n = (int)(start + length - from);
                tail.AsSpan((int)(from - tailStart), n).CopyTo(span.Slice((int)(from - start)));
                any = true;
            }

            if (!any)
            {
                pendingZeros += length;
                continue;
            }
            if (pendingZeros > 0)
            {
                skipZeros(pendingZeros);
                pendingZeros = 0;
            }
            writeData(span);
        }
        if (pendingZeros > 0)
        {
            skipZeros(pendingZeros);
        }
    }

    private static int ClusterLength(long size, long index) => (int)Math.Min(ClusterSize, size - index * ClusterSize);

    private enum ClusterKind { Zero, Random, Text, Mixed }

    /// <summary>Alternating data and zero runs; sequential, so the layout depends only on seed and fraction.</summary>
    private sealed class Layout(int seed, double dataFraction)
    {
        private const double MeanDataRun = 8;
        private Rng _rng = new(Mix(seed, -1, 0x4c41594f));
        private long _remaining;
        private bool _inData = true;

        public ClusterKind Next()
        {
            while (_remaining == 0)
            {
                _inData = !_inData;
                if (_inData)
                {
                    _remaining = dataFraction <= 0 ? 0 : 1 + (long)(_rng.NextDouble() * (2 * MeanDataRun - 1));
                }
                else
                {
                    double meanZeros = dataFraction >= 1 ? 0 : dataFraction <= 0 ? double.PositiveInfinity : MeanDataRun * (1 - dataFraction) / dataFraction;
                    _remaining = double.IsPositiveInfinity(meanZeros) ? long.MaxValue : (long)Math.Round(_rng.NextDouble() * 2 * meanZeros);
                }
            }
            _remaining--;
            if (!_inData)
            {
                return ClusterKind.Zero;
            }
            var pick = _rng.NextDouble();
            return pick < 0.45 ? ClusterKind.Random : pick < 0.80 ? ClusterKind.Text : ClusterKind.Mixed;
        }
    }

    private static void FillCluster(Span<byte> span, ClusterKind kind, Rng rng)
    {
        switch (kind)
        {
            case ClusterKind.Random:
                rng.Fill(span);
                break;
            case ClusterKind.Text:
                FillText(span, ref rng);
                break;
            case ClusterKind.Mixed:
                bool anyData = false;
                for (int off = 0; off < span.Length; off += BlockSize)
                {
                    var block = span.Slice(off, Math.Min(BlockSize, span.Length - off));
                    var pick = rng.Next() % 4;
                    if (pick == 0) { rng.Fill(block); anyData = true; }
                    else if (pick == 1) { FillText(block, ref rng); anyData = true; }
                    else block.Clear();
                }
                if (!anyData)
                {
                    // A data cluster must hold data, or dataFraction would lie.
                    rng.Fill(span.Slice(0, Math.Min(BlockSize, span.Length)));
                }
                break;
        }
    }

    private static readonly byte[][] Words = "the kernel systemd mounted filesystem ext4 root device started unit network interface link up dhcp lease address package installed debian bookworm service journal boot loader grub image layer blob digest sha256 registry oras nosi cloud init user data write disk sector partition"
        .Split(' ').Select(Encoding.ASCII.GetBytes).ToArray();

    private static void FillText(Span<byte> span, ref Rng rng)
    {
        int pos = 0;
        Span<byte> stamp = stackalloc byte[32];
        while (pos < span.Length)
        {
            // "Nov 26 12:34:56 host word word ...\n": compressible, but not a repeated constant.
            var secs = rng.Next() % 86400;
            var line = Encoding.ASCII.GetBytes($"Nov 26 {secs / 3600:00}:{secs / 60 % 60:00}:{secs % 60:00} lab ", stamp);
            pos += Copy(stamp[..line], span, pos);
            var words = 3 + (int)(rng.Next() % 9);
            for (int w = 0; w < words && pos < span.Length; w++)
            {
                pos += Copy(Words[rng.Next() % (ulong)Words.Length], span, pos);
                if (pos < span.Length) span[pos++] = (byte)(w + 1 == words ? '\n' : ' ');
            }
        }
    }

    private static int Copy(ReadOnlySpan<byte> src, Span<byte> dst, int pos)
    {
        var n = Math.Min(src.Length, dst.Length - pos);
        src[..n].CopyTo(dst.Slice(pos));
        return n;
    }

    private static byte[] BuildHeaderRegion(long size, int seed)
    {
        var region = new byte[Math.Min(size, HeaderRegionBytes)];
        var full = new byte[HeaderRegionBytes];
        long sectors = size / SectorSize;
        var rng = new Rng(Mix(seed, -2, 0x4d425231));

        // Boot code: not zero, like a real boot sector.
        rng.Fill(full.AsSpan(0, 440));
        BinaryPrimitives.WriteUInt32LittleEndian(full.AsSpan(440), (uint)rng.Next()); // disk signature
        // Protective MBR entry covering the disk (type 0xEE from LBA 1).
        var entry = full.AsSpan(446, 16);
        entry[1] = 0x00; entry[2] = 0x02; entry[3] = 0x00;
        entry[4] = 0xEE;
        entry[5] = 0xFF; entry[6] = 0xFF; entry[7] = 0xFF;
        BinaryPrimitives.WriteUInt32LittleEndian(entry.Slice(8), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(entry.Slice(12), (uint)Math.Clamp(sectors - 1, 0, uint.MaxValue));
        full[510] = 0x55;
        full[511] = 0xAA;

        var entries = BuildPartitionEntries(sectors, ref rng);
        entries.CopyTo(full.AsSpan(2 * SectorSize));
        var diskGuid = RandomGuid(ref rng);
        WriteGptHeader(full.AsSpan(SectorSize, SectorSize), currentLba: 1, backupLba: Math.Max(sectors - 1, 1),
            entriesLba: 2, sectors, diskGuid, entries);

        full.AsSpan(0, region.Length).CopyTo(region);
        return region;
    }

    private static byte[] BuildTailRegion(long size, int seed)
    {
        // Shares the primary header's seed so the backup matches it.
        long sectors = size / SectorSize;
        var rng = new Rng(Mix(seed, -2, 0x4d425231));
        rng.Fill(stackalloc byte[440]);
        rng.Next();
        var entries = BuildPartitionEntries(sectors, ref rng);
        var diskGuid = RandomGuid(ref rng);
        var full = new byte[TailRegionBytes];
        entries.CopyTo(full.AsSpan(0));
        WriteGptHeader(full.AsSpan(EntriesBytes, SectorSize), currentLba: Math.Max(sectors - 1, 1), backupLba: 1,
            entriesLba: Math.Max(sectors - 1 - EntriesBytes / SectorSize, 2), sectors, diskGuid, entries);
        // Small images: only the backup header fits at the end, and it must not overwrite the primary tables.
        var length = size >= HeaderRegionBytes + SectorSize
            ? (int)Math.Min(size - HeaderRegionBytes, TailRegionBytes)
            : (int)Math.Clamp(size - 2 * SectorSize, 0, SectorSize);
        return full.AsSpan(TailRegionBytes - length).ToArray();
    }

    private static byte[] BuildPartitionEntries(long sectors, ref Rng rng)
    {
        var entries = new byte[EntriesBytes];
        long firstUsable = 34, lastUsable = Math.Max(sectors - 34, firstUsable);
        // An EFI system partition (up to 1 MiB) and a Linux root filling the rest.
        long espEnd = Math.Min(firstUsable + 2047, lastUsable);
        WriteEntry(entries.AsSpan(0, PartitionEntrySize), new Guid("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"), RandomGuid(ref rng), firstUsable, espEnd, "EFI System");
        if (espEnd < lastUsable)
        {
            WriteEntry(entries.AsSpan(PartitionEntrySize, PartitionEntrySize), new Guid("0FC63DAF-8483-4772-8E79-3D69D8477DE4"), RandomGuid(ref rng), espEnd + 1, lastUsable, "root");
        }
        return entries;
    }

    private static void WriteEntry(Span<byte> e, Guid type, Guid unique, long first, long last, string name)
    {
        type.TryWriteBytes(e);
        unique.TryWriteBytes(e.Slice(16));
        BinaryPrimitives.WriteInt64LittleEndian(e.Slice(32), first);
        BinaryPrimitives.WriteInt64LittleEndian(e.Slice(40), last);
        Encoding.Unicode.GetBytes(name, e.Slice(56));
    }

    private static void WriteGptHeader(Span<byte> h, long currentLba, long backupLba, long entriesLba, long sectors, Guid diskGuid, byte[] entries)
    {
        Encoding.ASCII.GetBytes("EFI PART", h);
        BinaryPrimitives.WriteUInt32LittleEndian(h.Slice(8), 0x00010000);
        BinaryPrimitives.WriteUInt32LittleEndian(h.Slice(12), 92);
        BinaryPrimitives.WriteInt64LittleEndian(h.Slice(24), currentLba);
        BinaryPrimitives.WriteInt64LittleEndian(h.Slice(32), backupLba);
        BinaryPrimitives.WriteInt64LittleEndian(h.Slice(40), 34);
        BinaryPrimitives.WriteInt64LittleEndian(h.Slice(48), Math.Max(sectors - 34, 34));
        diskGuid.TryWriteBytes(h.Slice(56));
        BinaryPrimitives.WriteInt64LittleEndian(h.Slice(72), entriesLba);
        BinaryPrimitives.WriteUInt32LittleEndian(h.Slice(80), PartitionEntryCount);
        BinaryPrimitives.WriteUInt32LittleEndian(h.Slice(84), PartitionEntrySize);
        BinaryPrimitives.WriteUInt32LittleEndian(h.Slice(88), Crc32(entries));
        BinaryPrimitives.WriteUInt32LittleEndian(h.Slice(16), Crc32(h[..92]));
    }

    private static Guid RandomGuid(ref Rng rng)
    {
        Span<byte> b = stackalloc byte[16];
        rng.Fill(b);
        b[7] = (byte)((b[7] & 0x0F) | 0x40);
        b[8] = (byte)((b[8] & 0x3F) | 0x80);
        return new Guid(b);
    }

    private static readonly uint[] CrcTable = Enumerable.Range(0, 256).Select(n =>
    {
        uint c = (uint)n;
        for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        return c;
    }).ToArray();

    private static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFFFFFFu;
        foreach (var b in data) c = CrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFu;
    }

    private static ulong Mix(int seed, long index, uint stream)
    {
        ulong z = ((ulong)(uint)seed << 32 | stream) ^ (ulong)index * 0x9E3779B97F4A7C15UL;
        return SplitMix(ref z);
    }

    private static ulong SplitMix(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>xoshiro256**: fast, and fully specified, so images never change with the runtime version.</summary>
    private struct Rng
    {
        private ulong _s0, _s1, _s2, _s3;

        public Rng(ulong seed)
        {
            _s0 = SplitMix(ref seed); _s1 = SplitMix(ref seed); _s2 = SplitMix(ref seed); _s3 = SplitMix(ref seed);
        }

        public ulong Next()
        {
            ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
            ulong t = _s1 << 17;
            _s2 ^= _s0; _s3 ^= _s1; _s1 ^= _s2; _s0 ^= _s3;
            _s2 ^= t;
            _s3 = ulong.RotateLeft(_s3, 45);
            return result;
        }

        public double NextDouble() => (Next() >> 11) * (1.0 / (1UL << 53));

        public void Fill(Span<byte> span)
        {
            var words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(span);
            for (int i = 0; i < words.Length; i++) words[i] = BitConverter.IsLittleEndian ? Next() : BinaryPrimitives.ReverseEndianness(Next());
            for (int i = words.Length * 8; i < span.Length; i++) span[i] = (byte)Next();
            // A random block could start with a zero word by chance; that is fine (it is still data).
        }
    }
}
