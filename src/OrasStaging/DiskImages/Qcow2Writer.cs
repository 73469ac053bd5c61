using System.Buffers.Binary;

namespace OrasStaging.DiskImages;

/// <summary>
/// The one-pass qcow2 v3 writer (disk-formats.md §2): non-zero clusters are appended in arrival order from
/// cluster 1, so host(g) = (1 + rank(g)) · cs and a bitmap over the input is the only state (2 MiB per TiB).
/// L2, L1, reftable and refcount blocks go after the data; the header is written last, after a flush, so a
/// file cut short anywhere is never a valid image.
/// </summary>
internal sealed class Qcow2Writer : IImageTarget
{
    private const int Cs = Qcow2Layout.ClusterSize;
    private const ulong Copied = 1UL << 63;

    private readonly ImageFile _file;
    private readonly List<ReadOnlyMemory<byte>> _segments = new();
    private ulong[] _bitmap = new ulong[1024];
    private long _guestCluster;
    private long _dataClusters;
    private byte[]? _padded;
    private readonly EarlyWriteback _writeback;

    public Qcow2Writer(ImageFile file)
    {
        _file = file;
        _writeback = new EarlyWriteback(file.Handle);
        // Cluster 0 stays zero until the very end: an interrupted write leaves no valid header.
        _file.Write(new byte[Cs], 0);
    }

    public void Append(byte[] buffer, int count)
    {
        _segments.Clear();
        long writeAt = (1 + _dataClusters) * Cs;
        int segStart = -1, segEnd = -1;
        for (int off = 0; off < count; off += Cs)
        {
            int len = Math.Min(Cs, count - off);
            long g = _guestCluster++;
            if (buffer.AsSpan(off, len).IndexOfAnyExcept((byte)0) < 0)
            {
                continue;
            }

            SetBit(g);
            _dataClusters++;
            if (len < Cs)
            {
                // The final partial cluster is written whole, zero-padded.
                _padded ??= new byte[Cs];
                Array.Clear(_padded);
                buffer.AsSpan(off, len).CopyTo(_padded);
                Flush(buffer, ref segStart, ref segEnd);
                _segments.Add(_padded);
                continue;
            }

            if (segEnd == off)
            {
                segEnd = off + Cs;
            }
            else
            {
                Flush(buffer, ref segStart, ref segEnd);
                segStart = off;
                segEnd = off + Cs;
            }
        }

        Flush(buffer, ref segStart, ref segEnd);
        if (_segments.Count > 0)
        {
            _file.Write(_segments, writeAt);
            _writeback.Written((1 + _dataClusters) * Cs);
        }
    }

    private void Flush(byte[] buffer, ref int start, ref int end)
    {
        if (start >= 0)
        {
            _segments.Add(new ReadOnlyMemory<byte>(buffer, start, end - start));
            start = end = -1;
        }
    }

    private void SetBit(long g)
    {
        long word = g >> 6;
        if (word >= _bitmap.Length)
        {
            Array.Resize(ref _bitmap, (int)Math.Max(word + 1, _bitmap.Length * 2L));
        }

        _bitmap[word] |= 1UL << (int)(g & 63);
    }

    private bool WindowHasData(long window)
    {
        long first = window * Qcow2Layout.EntriesPerCluster / 64;
        long last = Math.Min(_bitmap.Length, first + (Qcow2Layout.EntriesPerCluster / 64));
        return first < _bitmap.Length && _bitmap.AsSpan((int)first, (int)(last - first)).IndexOfAnyExcept(0UL) >= 0;
    }

    public (long VirtualSize, long FileSize) Finish(long decodedLength, long virtualSize)
    {
        long l1Entries = Qcow2Layout.L1Entries(virtualSize);
        long inputWindows = Qcow2Layout.CeilDiv(_guestCluster, Qcow2Layout.EntriesPerCluster);
        var windows = new List<long>();
        for (long w = 0; w < inputWindows; w++)
        {
            if (WindowHasData(w))
            {
                windows.Add(w);
            }
        }

        long l1Clusters = Qcow2Layout.L1Clusters(l1Entries);
        long m = 1 + _dataClusters + windows.Count + l1Clusters;
        var (rb, rt) = Qcow2Layout.RefcountLayout(m);
        long n = m + rt + rb;
        long l2Start = 1 + _dataClusters;
        long l1Start = l2Start + windows.Count;
        long rtStart = l1Start + l1Clusters;
        long rbStart = rtStart + rt;

        var cluster = new byte[Cs];
        long rank = 0;
        for (int i = 0; i < windows.Count; i++)
        {
            Array.Clear(cluster);
            long baseCluster = windows[i] * Qcow2Layout.EntriesPerCluster;
            for (int e = 0; e < Qcow2Layout.EntriesPerCluster; e++)
            {
                long g = baseCluster + e;
                long word = g >> 6;
                if (word < _bitmap.Length && (_bitmap[word] & (1UL << (int)(g & 63))) != 0)
                {
                    rank++;
                    BinaryPrimitives.WriteUInt64BigEndian(cluster.AsSpan(e * 8), (ulong)(rank * Cs) | Copied);
                }
            }

            _file.Write(cluster, (l2Start + i) * Cs);
        }

        if (l1Clusters > 0)
        {
            var l1 = new byte[l1Clusters * Cs];
            for (int i = 0; i < windows.Count; i++)
            {
                BinaryPrimitives.WriteUInt64BigEndian(l1.AsSpan((int)(windows[i] * 8)), (ulong)((l2Start + i) * Cs) | Copied);
            }

            _file.Write(l1, l1Start * Cs);
        }

        var table = new byte[rt * Cs];
        for (long i = 0; i < rb; i++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(table.AsSpan((int)(i * 8)), (ulong)((rbStart + i) * Cs));
        }

        _file.Write(table, rtStart * Cs);

        var ones = new byte[Cs];
        for (int i = 0; i < Cs; i += 2)
        {
            ones[i + 1] = 1;
        }

        for (long i = 0; i < rb; i++)
        {
            long covered = n - (i * Qcow2Layout.RefcountsPerBlock);
            if (covered >= Qcow2Layout.RefcountsPerBlock)
            {
                _file.Write(ones, (rbStart + i) * Cs);
            }
            else
            {
                Array.Clear(cluster);
                ones.AsSpan(0, (int)(covered * 2)).CopyTo(cluster);
                _file.Write(cluster, (rbStart + i) * Cs);
            }
        }

        _file.EndAt(n * Cs);
        _file.Flush();

        var header = new byte[120];
        BinaryPrimitives.WriteUInt32BigEndian(header, 0x514649FB);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(4), 3);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(20), Qcow2Layout.ClusterBits);
        BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(24), (ulong)virtualSize);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(36), (uint)l1Entries);
        BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(40), (ulong)(l1Start * Cs));
        BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(48), (ulong)(rtStart * Cs));
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(56), (uint)rt);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(96), Qcow2Layout.RefcountOrder);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(100), 112);
        _file.Write(header, 0);
        _file.Flush();
        return (virtualSize, n * Cs);
    }

    public ImageFile File => _file;

    public void Dispose() => _file.Dispose();
}
