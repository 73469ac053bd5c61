using System.Buffers;
using System.Buffers.Binary;
using OrasStaging.Compression;

namespace OrasStaging.DiskImages.Qcow2;

/// <summary>
/// Decodes a qcow2 from a forward-only stream (Install, Expand of a .qcow2.zst) straight into an image target,
/// in guest order, with no copy of the file. It parses the L1, refcount and L2 tables as the stream reaches them
/// and writes each guest cluster out as soon as its L2 entry and its data have arrived. This is direct when the
/// tables precede the data they map, as 'qemu-img convert' writes them (compressed clusters packed out of guest
/// order are held the few blocks it takes); whatever arrives before the table that maps it is kept by
/// <see cref="Qcow2HostStore"/>, in memory and past a cap in one spool beside the target, which Verbose names.
/// Every entry is checked as by <see cref="Qcow2Image"/>; bounds against the file's end are checked at the end.
/// This file tracks the tables (which host regions are awaited, parsing them as they arrive); the cluster output
/// (guest order, zeros, parallel inflate into the target's buffer) is in Qcow2StreamDecoder.Output.cs.
/// </summary>
internal sealed partial class Qcow2StreamDecoder : IDisposable
{
    /// <summary>The file length the checks use while the end is not known (far past anything real, no overflow).</summary>
    private const long UnknownLength = 1L << 60;

    private const long MemoryCap = 16L << 20;

    private readonly Qcow2Header _h;
    private readonly IImageTarget _target;
    private readonly Qcow2HostStore _store;
    private readonly PriorityQueue<Region, long> _regions = new();
    private readonly HashSet<long> _seenL2 = new();
    private readonly long[] _l2At;
    private readonly ulong[]?[] _l2;
    private readonly int _perL2;
    private readonly long _clusters;
    private bool _l1Parsed;
    private long _l2Expected;
    private long _l2Parsed;
    private long _next;
    private bool _ended;

    private readonly DecoderChoice _decoder;

    public Qcow2StreamDecoder(Qcow2Header header, IImageTarget target, string spoolBeside, Action<string> onSpool,
        DecoderChoice decoder = DecoderChoice.Default)
    {
        _h = header;
        _decoder = decoder;
        _target = target;
        int cs = header.ClusterSize;
        int block = Math.Max(cs, 64 << 10);
        _store = new Qcow2HostStore(block, spoolBeside, Math.Max(MemoryCap, 8L * block), onSpool);
        _perL2 = cs / (header.ExtendedL2 ? 16 : 8);
        _clusters = (header.VirtualSize + cs - 1) / cs;
        long needed = header.VirtualSize == 0 ? 0 : 1 + ((header.VirtualSize - 1) / header.BytesPerL2);
        _l2At = new long[needed]; // needed ≤ l1_size ≤ 4 Mi entries, checked by the header.
        _l2 = new ulong[]?[needed];
        _regions.Enqueue(new Region(RegionKind.L1, header.L1Offset, needed * 8, -1), header.L1Offset + (needed * 8));
        long reftable = header.ReftableClusters * cs;
        _regions.Enqueue(new Region(RegionKind.Reftable, header.ReftableOffset, reftable, -1), header.ReftableOffset + reftable);
    }

    private const string NotStreamableKey = "OrasStaging.Qcow2.NotStreamable";

    /// <summary>
    /// The failure of a layout this decoder cannot follow although the image may be valid (a host cluster shared by
    /// two guest clusters, or packing out of write order): a caller that can read the input again decodes it from a file.
    /// </summary>
    public static bool IsNotStreamable(Exception ex) => ex is OrasStagingException o && o.Data.Contains(NotStreamableKey);

    /// <summary>Bytes spooled because data came before its table; 0 when the stream was decoded directly.</summary>
    public long SpooledBytes => _store.SpooledBytes;

    /// <summary>Peak host bytes held in memory.</summary>
    public long PeakMemory => _store.PeakMemory;

    /// <summary>The next host bytes of the qcow2, in file order.</summary>
    public void Append(byte[] buffer, int count)
    {
        _store.Append(buffer.AsSpan(0, count));
        Step();
    }

    /// <summary>The stream has ended: checks that every table and cluster came, and writes the rest.</summary>
    public void End()
    {
        long fileLength = _store.Position;
        _ended = true;
        Step();
        if (_next < _clusters)
        {
            throw Qcow2Header.Corrupt($"guest cluster {_next} maps to data past the end of the {fileLength}-byte file");
        }

        if (_outLength > 0)
        {
            _target.Append(_out, _outLength);
            _outLength = 0;
        }
    }

    private void Step()
    {
        if (!_headerExplained && _store.Position >= _h.ClusterSize)
        {
            _store.Explain(0, _h.ClusterSize);
            _headerExplained = true;
        }

        ParseArrivedTables();
        Emit();
        _store.Release();
    }

    private void ParseArrivedTables()
    {
        while (_regions.TryPeek(out var r, out long end) && (end <= _store.Position || _ended))
        {
            _regions.Dequeue();
            if (end > _store.Position)
            {
                if (r.Kind == RegionKind.Refblock)
                {
                    continue; // A refcount block past the end matters to qemu-img check, not to the guest's content.
                }

                throw Qcow2Header.Corrupt($"the {_store.Position}-byte file ends inside its {r.Kind} table at {r.Offset}");
            }

            Parse(r);
        }
    }

    private void Parse(Region r)
    {
        if (r.Kind == RegionKind.Refblock)
        {
            _store.Explain(r.Offset, r.Length);
            return;
        }

        var raw = ArrayPool<byte>.Shared.Rent((int)r.Length);
        try
        {
            var bytes = raw.AsSpan(0, (int)r.Length);
            if (!_store.TryRead(r.Offset, bytes))
            {
                throw Qcow2Header.Corrupt($"the {r.Kind} table at {r.Offset} overlaps another table or the data before it");
            }

            // The whole clusters of a table are its own, padding included.
            _store.Explain(r.Offset, r.Kind == RegionKind.L1 ? RoundUp(_h.L1Entries * 8, _h.ClusterSize) : r.Length);
            switch (r.Kind)
            {
                case RegionKind.L1:
                    ParseL1(bytes);
                    break;
                case RegionKind.Reftable:
                    ParseReftable(bytes);
                    break;
                default:
                    ParseL2(r.Window, bytes);
                    break;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(raw);
        }
    }

    private void ParseL1(ReadOnlySpan<byte> l1)
    {
        _l1Parsed = true;
        for (int i = 0; i < _l2At.Length; i++)
        {
            long at = Qcow2Image.L2Offset(_h, BinaryPrimitives.ReadUInt64BigEndian(l1[(i * 8)..]), i, UnknownLength, _seenL2);
            _l2At[i] = at;
            if (at != 0)
            {
                _l2Expected++;
                Register(new Region(RegionKind.L2, at, _h.ClusterSize, i));
            }
        }

        _store.MappingComplete = _l2Parsed == _l2Expected;
    }

    private void ParseReftable(ReadOnlySpan<byte> table)
    {
        // Refcount blocks are not needed to read the guest; knowing where they are lets the store drop them.
        for (int i = 0; i + 8 <= table.Length; i += 8)
        {
            long at = (long)(BinaryPrimitives.ReadUInt64BigEndian(table[i..]) & ~0x1FFUL & long.MaxValue);
            if (at >= _h.ClusterSize && at % _h.ClusterSize == 0)
            {
                Register(new Region(RegionKind.Refblock, at, _h.ClusterSize, -1));
            }
        }
    }

    private void Register(Region r)
    {
        long end = r.Offset + r.Length;
        if (end <= _store.Position)
        {
            // Already passed: the store kept it, as nothing had explained those bytes yet.
            Parse(r);
            return;
        }

        _regions.Enqueue(r, end);
    }

    private void ParseL2(int window, ReadOnlySpan<byte> raw)
    {
        var table = Qcow2Image.ParseL2(_h, raw, window, UnknownLength);
        _l2[window] = table;
        long first = (long)window * _perL2;
        long last = Math.Min(_clusters, first + _perL2);
        for (long g = first; g < last; g++)
        {
            _segments.Clear();
            Qcow2Image.EntrySegments(_h, table, g, _segments);
            foreach (var s in _segments)
            {
                long length = HostLength(s);
                if (length == 0)
                {
                    continue;
                }

                if (!_store.Holds(s.HostOffset, length))
                {
                    var ex = new OrasStagingException(ErrorCode.UnsupportedFormat,
                        $"The qcow2 stream maps guest offset {s.GuestOffset} to host bytes at {s.HostOffset} that it had already passed as another table or cluster.",
                        "Decompress the file first (Expand-DiskImage to .qcow2) and convert that file, which is read by random access.");
                    ex.Data[NotStreamableKey] = true;
                    throw ex;
                }

                _store.Pend(s.HostOffset, length, +1);
            }
        }

        _l2Parsed++;
        _store.MappingComplete = _l1Parsed && _l2Parsed == _l2Expected;
    }

    private static long RoundUp(long n, long to) => (n + to - 1) / to * to;

    public void Dispose()
    {
        foreach (var job in _jobs)
        {
            ArrayPool<byte>.Shared.Return(job.Source);
        }

        _jobs.Clear();
        while (_decompressors.TryTake(out var d))
        {
            d.Dispose();
        }

        _store.Dispose();
    }

    private enum RegionKind
    {
        L1,
        Reftable,
        Refblock,
        L2,
    }

    private readonly record struct Region(RegionKind Kind, long Offset, long Length, int Window);
}
