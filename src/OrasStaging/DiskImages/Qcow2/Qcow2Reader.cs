using System.Buffers;
using System.Collections.Concurrent;
using OrasStaging.Compression;

namespace OrasStaging.DiskImages.Qcow2;

/// <summary>
/// The guest's raw content of a checked <see cref="Qcow2Image"/>, by random access. Contiguous host clusters
/// are read with one call, zero ranges are never read, and the compressed clusters of one request are inflated
/// in parallel (one decompressor per worker), which is where the time of a compressed image goes.
/// Thread-safety: one caller at a time.
/// </summary>
internal sealed class Qcow2Reader : IDisposable
{
    /// <summary>What <see cref="CopyTo"/> appends per call: a multiple of every cluster size and of 64 KiB.</summary>
    public const int ChunkSize = 4 << 20;

    private readonly Qcow2Image _image;
    private readonly ConcurrentBag<Qcow2Decompressor> _decompressors = new();
    private readonly List<Qcow2Segment> _compressed = new();

    private readonly DecoderChoice _decoder;

    public Qcow2Reader(Qcow2Image image, DecoderChoice decoder = DecoderChoice.Default)
    {
        _image = image;
        _decoder = decoder;
    }

    public long Length => _image.VirtualSize;

    /// <summary>
    /// Guest ranges in order, covering [0, virtual size) exactly once: IsZero ranges read as zeros and need not
    /// be written by a sparse target; the others hold data (possibly zeros too, when the image stored them so).
    /// </summary>
    public IEnumerable<(long Offset, long Length, bool IsZero)> Extents()
    {
        long start = 0, length = 0;
        bool zero = false;
        foreach (var s in _image.Segments(0, long.MaxValue))
        {
            bool z = s.Kind == Qcow2SegmentKind.Zero;
            if (length > 0 && z != zero)
            {
                yield return (start, length, zero);
                start = s.GuestOffset;
                length = 0;
            }

            zero = z;
            length += s.Length;
        }

        if (length > 0)
        {
            yield return (start, length, zero);
        }
    }

    /// <summary>Fills <paramref name="buffer"/> with guest bytes from <paramref name="offset"/>; the range must lie within the virtual size.</summary>
    public void Read(long offset, Memory<byte> buffer)
    {
        if (offset < 0 || buffer.Length > _image.VirtualSize - offset)
        {
            throw new OrasStagingException(ErrorCode.InvalidArgument, $"A read of {buffer.Length} bytes at {offset} is outside the {_image.VirtualSize}-byte disk.");
        }

        if (buffer.IsEmpty)
        {
            return;
        }

        long cs = _image.ClusterSize;
        long end = offset + buffer.Length;
        _compressed.Clear();
        Qcow2Segment run = default;
        bool open = false;
        foreach (var s in _image.Segments(offset / cs, ((end - 1) / cs) + 1))
        {
            if (open && Extends(run, s))
            {
                run = run with { Length = run.Length + s.Length };
                continue;
            }

            if (open)
            {
                Copy(run, offset, buffer.Span);
            }

            run = s;
            open = true;
        }

        if (open)
        {
            Copy(run, offset, buffer.Span);
        }

        if (_compressed.Count > 0)
        {
            Inflate(offset, buffer);
        }
    }

    /// <summary>
    /// Appends the whole disk to <paramref name="target"/> in guest order, <see cref="ChunkSize"/> bytes per call.
    /// The next chunk is read and inflated while the target writes the current one (two buffers), so the zero scan
    /// and the writes of the target overlap the inflate instead of following it.
    /// </summary>
    public void CopyTo(IImageTarget target, CancellationToken cancellationToken = default)
    {
        byte[] current = ArrayPool<byte>.Shared.Rent(ChunkSize), next = ArrayPool<byte>.Shared.Rent(ChunkSize);
        Task? pending = null;
        try
        {
            long length = _image.VirtualSize;
            int Size(long at) => (int)Math.Min(ChunkSize, length - at);
            if (length > 0)
            {
                Read(0, current.AsMemory(0, Size(0)));
            }

            for (long at = 0; at < length; at += ChunkSize)
            {
                cancellationToken.ThrowIfCancellationRequested();
                long following = at + ChunkSize;
                if (following < length)
                {
                    byte[] into = next;
                    pending = Task.Run(() => Read(following, into.AsMemory(0, Size(following))), cancellationToken);
                }

                target.Append(current, Size(at));
                if (pending is not null)
                {
                    Task done = pending;
                    pending = null;
                    done.GetAwaiter().GetResult(); // a CorruptInput surfaces as itself
                }

                (current, next) = (next, current);
            }
        }
        finally
        {
            if (pending is not null)
            {
                // The target failed while a read was under way: let it finish before its buffer is returned.
                try
                {
                    pending.Wait(CancellationToken.None);
                }
                catch (Exception)
                {
                    // The target's failure is the one to report.
                }
            }

            ArrayPool<byte>.Shared.Return(current);
            ArrayPool<byte>.Shared.Return(next);
        }
    }

    private static bool Extends(Qcow2Segment run, Qcow2Segment s) => run.Kind == s.Kind && s.Kind switch
    {
        Qcow2SegmentKind.Zero => true,
        Qcow2SegmentKind.Data => s.HostOffset == run.HostOffset + run.Length,
        _ => false,
    };

    private void Copy(Qcow2Segment run, long offset, Span<byte> buffer)
    {
        if (run.Kind == Qcow2SegmentKind.Compressed)
        {
            _compressed.Add(run);
            return;
        }

        long from = Math.Max(run.GuestOffset, offset);
        long to = Math.Min(run.GuestOffset + run.Length, offset + buffer.Length);
        var dest = buffer.Slice((int)(from - offset), (int)(to - from));
        if (run.Kind == Qcow2SegmentKind.Zero)
        {
            dest.Clear();
            return;
        }

        long host = run.HostOffset + (from - run.GuestOffset);
        int done = 0;
        while (done < dest.Length)
        {
            int n = RandomAccess.Read(_image.Handle, dest[done..], host + done);
            if (n == 0)
            {
                // A data cluster cut short by the end of the file reads as zeros past it, as it does in qemu.
                dest[done..].Clear();
                break;
            }

            done += n;
        }
    }

    private void Inflate(long offset, Memory<byte> buffer)
    {
        var work = _compressed;
        var options = new ParallelOptions { MaxDegreeOfParallelism = work.Count > 1 ? Environment.ProcessorCount : 1 };
        try
        {
            Parallel.For(0, work.Count, options, Take, (i, _, d) =>
            {
                InflateOne(work[i], offset, buffer, d);
                return d;
            }, _decompressors.Add);
        }
        catch (AggregateException ex)
        {
            // Report the first failure as itself (a CorruptInput), not wrapped by the parallel loop.
            var first = ex.Flatten().InnerExceptions[0];
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(first).Throw();
        }
    }

    private Qcow2Decompressor Take() => _decompressors.TryTake(out var d) ? d : new Qcow2Decompressor(_image.Header.Compression, _decoder);

    private void InflateOne(Qcow2Segment s, long offset, Memory<byte> buffer, Qcow2Decompressor d)
    {
        int cs = _image.ClusterSize;
        long available = _image.FileLength - s.HostOffset;
        int clen = (int)Math.Min(s.CompressedLength, available);
        var source = ArrayPool<byte>.Shared.Rent(clen);
        byte[]? cluster = null;
        try
        {
            Qcow2Image.ReadExactly(_image.Handle, source.AsSpan(0, clen), s.HostOffset);
            long from = Math.Max(s.GuestOffset, offset);
            long to = Math.Min(s.GuestOffset + s.Length, offset + buffer.Length);
            if (from == s.GuestOffset && to - from == cs)
            {
                d.Decompress(source, clen, buffer.Slice((int)(from - offset), cs));
                return;
            }

            cluster = ArrayPool<byte>.Shared.Rent(cs);
            d.Decompress(source, clen, cluster.AsMemory(0, cs));
            cluster.AsSpan((int)(from - s.GuestOffset), (int)(to - from)).CopyTo(buffer.Span[(int)(from - offset)..]);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(source);
            if (cluster is not null)
            {
                ArrayPool<byte>.Shared.Return(cluster);
            }
        }
    }

    public void Dispose()
    {
        while (_decompressors.TryTake(out var d))
        {
            d.Dispose();
        }
    }
}
