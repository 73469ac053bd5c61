using System.Buffers;
using System.Collections.Concurrent;

namespace OrasStaging.DiskImages.Qcow2;

/// <summary>
/// The cluster output of <see cref="Qcow2StreamDecoder"/>: guest clusters in order, as soon as their L2 entry and
/// their host bytes have arrived, zero ranges as zeros, compressed clusters inflated in parallel per output buffer.
/// </summary>
internal sealed partial class Qcow2StreamDecoder
{
    private readonly List<Qcow2Segment> _segments = new(32);
    private readonly List<Job> _jobs = new();
    private readonly ConcurrentBag<Qcow2Decompressor> _decompressors = new();
    private readonly byte[] _out = new byte[Qcow2Reader.ChunkSize];
    private int _outLength;
    private bool _headerExplained;
    private long _tailStart = -1;
    private long _tailEnd;

    private static long HostLength(Qcow2Segment s) => s.Kind switch
    {
        Qcow2SegmentKind.Data => s.Length,
        Qcow2SegmentKind.Compressed => s.CompressedLength,
        _ => 0,
    };

    /// <summary>Writes guest clusters out in order for as long as their tables and data have arrived.</summary>
    private void Emit()
    {
        long cs = _h.ClusterSize;
        while (_l1Parsed && _next < _clusters)
        {
            long window = _next / _perL2;
            if (_l2At[window] == 0)
            {
                // A whole unallocated L1 entry reads as zeros.
                long end = Math.Min(_clusters, (window + 1) * _perL2);
                Zeros(Math.Min(_h.VirtualSize, end * cs) - (_next * cs));
                _next = end;
                continue;
            }

            var table = _l2[window];
            if (table is null)
            {
                break; // Its L2 table has not arrived yet.
            }

            _segments.Clear();
            Qcow2Image.EntrySegments(_h, table, _next, _segments);
            if (!Arrived())
            {
                break;
            }

            foreach (var s in _segments)
            {
                Write(s);
            }

            _next++;
            if ((_next % _perL2) == 0 || _next == _clusters)
            {
                _l2[window] = null; // Done with this table.
            }
        }

        Inflate();
    }

    private bool Arrived()
    {
        foreach (var s in _segments)
        {
            long length = HostLength(s);
            if (length > 0 && s.HostOffset + length > _store.Position)
            {
                // A compressed descriptor may count sectors past the end of the file: at the end, what came is all there is.
                if (!_ended || s.Kind != Qcow2SegmentKind.Compressed || s.HostOffset >= _store.Position)
                {
                    return false;
                }
            }
        }

        return true;
    }

    private void Write(Qcow2Segment s)
    {
        if (s.Kind == Qcow2SegmentKind.Zero)
        {
            Zeros(s.Length);
            return;
        }

        int length = (int)s.Length;
        if (_outLength + length > _out.Length)
        {
            Flush();
        }

        if (s.Kind == Qcow2SegmentKind.Data)
        {
            if (!_store.TryRead(s.HostOffset, _out.AsSpan(_outLength, length)))
            {
                throw Qcow2Header.Corrupt($"the data of guest offset {s.GuestOffset} at {s.HostOffset} is missing from the stream");
            }

            _store.Explain(s.HostOffset, s.Length);
            _store.Pend(s.HostOffset, s.Length, -1);
        }
        else
        {
            int clen = (int)Math.Min(s.CompressedLength, _store.Position - s.HostOffset);
            var source = ArrayPool<byte>.Shared.Rent(clen);
            if (!_store.TryRead(s.HostOffset, source.AsSpan(0, clen)))
            {
                ArrayPool<byte>.Shared.Return(source);
                throw Qcow2Header.Corrupt($"the compressed data of guest offset {s.GuestOffset} at {s.HostOffset} is missing from the stream");
            }

            ExplainCompressed(s.HostOffset, s.HostOffset + s.CompressedLength);
            _store.Pend(s.HostOffset, s.CompressedLength, -1);
            _jobs.Add(new Job(source, clen, _outLength, length));
        }

        _outLength += length;
    }

    /// <summary>
    /// A compressed descriptor counts whole sectors: its last sector may also hold the start of the next compressed
    /// cluster, which qemu packs right after it, possibly of a later L2 table not read yet. So that sector and the
    /// rest of its host cluster stay unexplained until the next compressed cluster in guest order is written out:
    /// qemu allocates compressed bytes in write order (guest order for convert), so what follows this one in its
    /// host cluster, if anything, is that next one; if it lies elsewhere, this host cluster was left half used.
    /// A layout that breaks the rule is caught when a table maps bytes already released (UnsupportedFormat).
    /// </summary>
    private void ExplainCompressed(long host, long end)
    {
        if (_tailStart >= 0)
        {
            _store.Explain(_tailStart, (host >= _tailStart && host < _tailEnd ? host : _tailEnd) - _tailStart);
        }

        long last = Math.Max(host, end - 512);
        _store.Explain(host, last - host);
        _tailStart = last;
        _tailEnd = RoundUp(end, _h.ClusterSize);
    }

    private void Zeros(long length)
    {
        while (length > 0)
        {
            if (_outLength == _out.Length)
            {
                Flush();
            }

            int n = (int)Math.Min(length, _out.Length - _outLength);
            _out.AsSpan(_outLength, n).Clear();
            _outLength += n;
            length -= n;
        }
    }

    /// <summary>Hands the full output buffer to the target (every Append but the last is whole buffers).</summary>
    private void Flush()
    {
        Inflate();
        _target.Append(_out, _outLength);
        _outLength = 0;
    }

    /// <summary>Inflates the compressed clusters placed in the output buffer, in parallel: that is where a compressed image's time goes.</summary>
    private void Inflate()
    {
        if (_jobs.Count == 0)
        {
            return;
        }

        int cs = _h.ClusterSize;
        try
        {
            var options = new ParallelOptions { MaxDegreeOfParallelism = _jobs.Count > 1 ? Environment.ProcessorCount : 1 };
            Parallel.For(0, _jobs.Count, options,
                () => _decompressors.TryTake(out var d) ? d : new Qcow2Decompressor(_h.Compression, _decoder),
                (i, _, d) =>
                {
                    var job = _jobs[i];
                    if (job.Length == cs)
                    {
                        d.Decompress(job.Source, job.SourceLength, _out.AsMemory(job.At, cs));
                        return d;
                    }

                    // The last cluster, clipped to the virtual size.
                    var cluster = ArrayPool<byte>.Shared.Rent(cs);
                    try
                    {
                        d.Decompress(job.Source, job.SourceLength, cluster.AsMemory(0, cs));
                        cluster.AsSpan(0, job.Length).CopyTo(_out.AsSpan(job.At));
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(cluster);
                    }

                    return d;
                },
                _decompressors.Add);
        }
        catch (AggregateException ex)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex.Flatten().InnerExceptions[0]).Throw();
        }
        finally
        {
            foreach (var job in _jobs)
            {
                ArrayPool<byte>.Shared.Return(job.Source);
            }

            _jobs.Clear();
        }
    }

    private readonly record struct Job(byte[] Source, int SourceLength, int At, int Length);
}
