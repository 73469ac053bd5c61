using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;

namespace OrasStaging.DiskImages.Qcow2;

/// <summary>
/// An opened qcow2 image whose active mapping has been read and checked in full before anything is returned:
/// the L1 table and every L2 table it references, each entry bounds-checked against the file. Memory is the L2
/// tables themselves (8 bytes per mapped guest cluster, 16 with extended L2), so it is bounded by the file size.
/// Internal snapshots are accepted: they are separate L1 tables that share clusters only through refcounts, so
/// the active L1 never depends on them (qcow2.txt "Snapshots"); the reader follows the active L1 alone.
/// </summary>
internal sealed class Qcow2Image : IDisposable
{
    private const ulong OffsetMask = 0x00FFFFFFFFFFFE00;
    private const ulong L1Reserved = 0x7F000000000001FF;
    private const ulong L2Compressed = 1UL << 62;
    private const ulong L2ZeroFlag = 1;
    private const ulong L2Copied = 1UL << 63;
    private const ulong L2StandardReserved = 0x3F000000000001FE;

    private readonly bool _ownsHandle;
    private readonly ulong[]?[] _l2;
    private readonly long[] _l2At;

    private Qcow2Image(SafeFileHandle handle, bool ownsHandle, long fileLength, Qcow2Header header, (ulong[]?[] Tables, long[] Offsets) mapping)
    {
        Handle = handle;
        _ownsHandle = ownsHandle;
        FileLength = fileLength;
        Header = header;
        (_l2, _l2At) = mapping;
    }

    public SafeFileHandle Handle { get; }
    public long FileLength { get; }
    public Qcow2Header Header { get; }
    public long VirtualSize => Header.VirtualSize;
    public int ClusterSize => Header.ClusterSize;
    public long ClusterCount => (VirtualSize + ClusterSize - 1) / ClusterSize;
    private int EntriesPerL2 => ClusterSize / (Header.ExtendedL2 ? 16 : 8);

    /// <summary>Opens and checks <paramref name="path"/> read-only.</summary>
    public static Qcow2Image Open(string path)
    {
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new OrasStagingException(ErrorCode.PathNotFound, $"The qcow2 image '{path}' does not exist.", null, ex);
        }

        try
        {
            return Open(handle, ownsHandle: true);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Reads and checks the header and the active mapping through <paramref name="handle"/>.</summary>
    public static Qcow2Image Open(SafeFileHandle handle, bool ownsHandle)
    {
        try
        {
            long length = RandomAccess.GetLength(handle);
            var first = new byte[(int)Math.Min(length, 2L << 20)];
            ReadExactly(handle, first, 0);
            var header = Qcow2Header.Parse(first, length);
            return new Qcow2Image(handle, ownsHandle, length, header, LoadMapping(handle, header, length));
        }
        catch (OrasStagingException)
        {
            throw;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            throw new OrasStagingException(ErrorCode.CorruptInput, "The qcow2 image could not be read: " + ex.Message,
                "Check the image with 'qemu-img check'; download or rebuild it.", ex);
        }
    }

    private static (ulong[]?[] Tables, long[] Offsets) LoadMapping(SafeFileHandle handle, Qcow2Header h, long fileLength)
    {
        long cs = h.ClusterSize;
        long needed = h.VirtualSize == 0 ? 0 : 1 + ((h.VirtualSize - 1) / h.BytesPerL2);
        var l1 = new byte[needed * 8]; // needed ≤ l1_size, whose table was bounded by the file size and 32 MiB.
        ReadExactly(handle, l1, h.L1Offset);
        var tables = new ulong[]?[needed];
        var offsets = new long[needed];
        var seen = new HashSet<long>();
        var raw = new byte[cs];
        for (long i = 0; i < needed; i++)
        {
            long at = L2Offset(h, BinaryPrimitives.ReadUInt64BigEndian(l1.AsSpan((int)(i * 8))), i, fileLength, seen);
            if (at == 0)
            {
                continue;
            }

            ReadExactly(handle, raw, at);
            tables[i] = ParseL2(h, raw, i, fileLength);
            offsets[i] = at;
        }

        return (tables, offsets);
    }

    /// <summary>
    /// The L2 table offset of L1 entry <paramref name="i"/> (0: unallocated), checked: reserved bits, the header,
    /// bounds (<paramref name="fileLength"/> is long.MaxValue for a stream, whose end is checked when it comes) and reuse.
    /// </summary>
    internal static long L2Offset(Qcow2Header h, ulong e, long i, long fileLength, HashSet<long> seen)
    {
        if ((e & L1Reserved) != 0)
        {
            throw Qcow2Header.Corrupt($"L1 entry {i} has reserved bits set (0x{e:X16})");
        }

        long at = (long)(e & OffsetMask);
        if (at == 0 && (e & L2Copied) != 0)
        {
            throw Qcow2Header.Corrupt($"L1 entry {i} points at the header");
        }

        if (at == 0)
        {
            return 0;
        }

        h.CheckTable($"L2 table of L1 entry {i}", at, h.ClusterSize, fileLength);
        if (!seen.Add(at))
        {
            throw Qcow2Header.Corrupt($"L1 entry {i} points at an L2 table another entry already uses");
        }

        return at;
    }

    /// <summary>The used entries of the L2 table of L1 entry <paramref name="i"/> from its raw cluster, each checked.</summary>
    internal static ulong[] ParseL2(Qcow2Header h, ReadOnlySpan<byte> raw, long i, long fileLength)
    {
        long cs = h.ClusterSize;
        int perL2 = (int)(cs / (h.ExtendedL2 ? 16 : 8));
        long clusters = (h.VirtualSize + cs - 1) / cs;
        int used = (int)Math.Min(perL2, clusters - (i * perL2));
        var table = new ulong[used * (h.ExtendedL2 ? 2 : 1)];
        for (int k = 0; k < table.Length; k++)
        {
            table[k] = BinaryPrimitives.ReadUInt64BigEndian(raw[(k * 8)..]);
        }

        for (int k = 0; k < used; k++)
        {
            CheckL2Entry(h, table, k, fileLength, (i * perL2) + k);
        }

        return table;
    }

    private static void CheckL2Entry(Qcow2Header h, ulong[] table, int k, long fileLength, long guestCluster)
    {
        bool ext = h.ExtendedL2;
        ulong e = table[ext ? 2 * k : k];
        string where = $"the L2 entry of guest cluster {guestCluster}";
        if ((e & L2Compressed) != 0)
        {
            var (host, clen) = CompressedRange(h, e);
            long sectorEnd = (fileLength + 511) & ~511L; // qemu's descriptor counts whole sectors, the file may end inside the last
            if (host < h.ClusterSize || host > sectorEnd - clen)
            {
                throw Qcow2Header.Corrupt($"{where} points {clen} bytes of compressed data at {host}, outside the data area of the {fileLength}-byte file");
            }

            return;
        }

        ulong reserved = ext ? L2StandardReserved | L2ZeroFlag : L2StandardReserved | (h.Version == 2 ? L2ZeroFlag : 0);
        if ((e & reserved) != 0)
        {
            throw Qcow2Header.Corrupt($"{where} has reserved bits set (0x{e:X16})");
        }

        long offset = (long)(e & OffsetMask);
        if (offset % h.ClusterSize != 0)
        {
            throw Qcow2Header.Corrupt($"{where} points at {offset}, not cluster-aligned");
        }

        bool readsData = ext ? (uint)table[(2 * k) + 1] != 0 : offset != 0 && (e & L2ZeroFlag) == 0;
        if (ext)
        {
            ulong bitmap = table[(2 * k) + 1];
            if (((uint)bitmap & (uint)(bitmap >> 32)) != 0)
            {
                throw Qcow2Header.Corrupt($"{where} marks a subcluster both allocated and zero");
            }

            if (readsData && offset == 0)
            {
                throw Qcow2Header.Corrupt($"{where} allocates subclusters without a host cluster");
            }
        }

        if (!ext && offset == 0 && (e & (L2Copied | L2ZeroFlag)) == L2Copied)
        {
            // Host offset 0 with COPIED is only meaningful with an external data file, which was refused: it would read the header.
            readsData = true;
        }

        long dataEnd = h.ClusterSize;
        if (ext)
        {
            // With subclusters qemu writes only the allocated ones: the file may end inside the last cluster.
            uint allocated = (uint)table[(2 * k) + 1];
            dataEnd = allocated == 0 ? 0 : (32 - System.Numerics.BitOperations.LeadingZeroCount(allocated)) * (h.ClusterSize / 32L);
        }

        if (readsData && (offset < h.ClusterSize || offset > fileLength - dataEnd))
        {
            throw Qcow2Header.Corrupt($"{where} points at {offset}, " + (offset < h.ClusterSize ? "inside the header" : $"past the end of the {fileLength}-byte file"));
        }
    }

    /// <summary>Compressed descriptor (qcow2.txt): x = 62 - (cluster_bits - 8) offset bits, then extra 512-byte sectors.</summary>
    private static (long Host, int Length) CompressedRange(Qcow2Header h, ulong e)
    {
        int x = 62 - (h.ClusterBits - 8);
        long host = (long)(e & ((1UL << x) - 1));
        long sectors = (long)((e >> x) & ((1UL << (h.ClusterBits - 8)) - 1)) + 1;
        return (host, (int)((sectors * 512) - (host & 511)));
    }

    /// <summary>
    /// The segments of guest clusters [<paramref name="first"/>, <paramref name="end"/>), in guest order, the last
    /// clipped to the virtual size. One per cluster, or per run of like subclusters with extended L2 entries.
    /// </summary>
    public IEnumerable<Qcow2Segment> Segments(long first, long end)
    {
        long cs = ClusterSize;
        end = Math.Min(end, ClusterCount);
        var into = new List<Qcow2Segment>(32);
        for (long g = first; g < end; g++)
        {
            into.Clear();
            EntrySegments(Header, _l2[g / EntriesPerL2], g, into);
            foreach (var s in into)
            {
                yield return s;
            }
        }
    }

    /// <summary>
    /// Appends the segments of guest cluster <paramref name="g"/>, clipped to the virtual size, given the checked
    /// L2 table of its L1 entry (null: unallocated). One per cluster, or per run of like subclusters.
    /// </summary>
    internal static void EntrySegments(Qcow2Header h, ulong[]? table, long g, List<Qcow2Segment> into)
    {
        long cs = h.ClusterSize;
        long guest = g * cs;
        long length = Math.Min(cs, h.VirtualSize - guest);
        int perL2 = (int)(cs / (h.ExtendedL2 ? 16 : 8));
        int k = (int)(g % perL2);
        if (table is null)
        {
            into.Add(new Qcow2Segment(guest, length, Qcow2SegmentKind.Zero, 0, 0));
            return;
        }

        ulong e = table[h.ExtendedL2 ? 2 * k : k];
        long offset = (long)(e & OffsetMask);
        if ((e & L2Compressed) != 0)
        {
            var (host, clen) = CompressedRange(h, e);
            into.Add(new Qcow2Segment(guest, length, Qcow2SegmentKind.Compressed, host, clen));
        }
        else if (!h.ExtendedL2)
        {
            bool zero = offset == 0 || (e & L2ZeroFlag) != 0;
            into.Add(new Qcow2Segment(guest, length, zero ? Qcow2SegmentKind.Zero : Qcow2SegmentKind.Data, zero ? 0 : offset, 0));
        }
        else
        {
            uint allocated = (uint)table[(2 * k) + 1];
            long sub = cs / 32;
            for (int s = 0; s < 32;)
            {
                bool data = (allocated & (1u << s)) != 0;
                int t = s + 1;
                while (t < 32 && ((allocated & (1u << t)) != 0) == data)
                {
                    t++;
                }

                long start = s * sub;
                if (start < length)
                {
                    long len = Math.Min(t * sub, length) - start;
                    into.Add(new Qcow2Segment(guest + start, len, data ? Qcow2SegmentKind.Data : Qcow2SegmentKind.Zero, data ? offset + start : 0, 0));
                }

                s = t;
            }
        }
    }

    /// <summary>
    /// Whether a forward-only reader could decode this layout: the L1 table precedes every L2 table, each L2 table
    /// precedes the clusters it maps, and host offsets grow with guest offsets (what 'qemu-img convert' writes).
    /// </summary>
    public bool CanStream(out string? reason)
    {
        long last = Header.L1Offset;
        long l2Max = 0;
        reason = null;
        for (long i = 0; i < _l2.Length; i++)
        {
            if (_l2[i] is null)
            {
                continue;
            }

            long l2At = _l2At[i];
            if (l2At < Header.L1Offset || l2At < l2Max)
            {
                reason = $"the L2 table at {l2At} precedes the L1 table or an earlier L2 table";
                return false;
            }

            l2Max = l2At;
            foreach (var s in Segments(i * EntriesPerL2, (i + 1) * EntriesPerL2))
            {
                if (s.Kind == Qcow2SegmentKind.Zero)
                {
                    continue;
                }

                if (s.HostOffset <= l2At || s.HostOffset < last)
                {
                    reason = $"guest offset {s.GuestOffset} is stored at {s.HostOffset}, before its L2 table ({l2At}) or the data of lower guest offsets ({last})";
                    return false;
                }

                last = s.HostOffset;
            }
        }

        return true;
    }


    /// <summary>Reads exactly buffer.Length bytes at <paramref name="offset"/>, or fails as a truncated image.</summary>
    internal static void ReadExactly(SafeFileHandle handle, Span<byte> buffer, long offset)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            int n = RandomAccess.Read(handle, buffer[done..], offset + done);
            if (n == 0)
            {
                throw Qcow2Header.Corrupt($"the file ends inside a table read at {offset}");
            }

            done += n;
        }
    }

    public void Dispose()
    {
        if (_ownsHandle)
        {
            Handle.Dispose();
        }
    }
}
