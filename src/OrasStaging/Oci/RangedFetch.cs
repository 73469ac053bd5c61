using System.Diagnostics;
using System.Runtime.ExceptionServices;
using System.Security.Cryptography;

namespace OrasStaging.Oci;

/// <summary>
/// One blob over several connections: [start, size) is cut into <see cref="ChunkSize"/> ranges, fetched by up to
/// <see cref="RegistryOptions.ConnectionLimit"/> workers at once and handed on in order (hashed, then written)
/// through a <see cref="ReorderBuffer"/>, so the digest check and the decoder see one ordered stream and memory stays
/// at <see cref="Window"/> x <see cref="ChunkSize"/>. Why: one TCP connection to a CDN is often capped far below the
/// link (issue 12). Connections open one at a time, only while the reader waits on the network (<see cref="ConnectionGrowth"/>).
/// The first range fetched is a probe: a server that ignores Range, or answers another range or length,
/// makes <see cref="RunAsync"/> return where the ordered bytes end, and the caller's single-connection loop goes on
/// from there; later ranges that do the same stop the workers the same way, without losing a delivered byte.
/// Each range resumes on its own after a drop (the retry policy's count and backoff); a Retry-After pauses every
/// worker; a 429 takes one connection away. A redirect to another host (a CDN's signed URL) is kept for the next
/// ranges, sent anonymously, and re-resolved through the registry when the CDN answers 401 or 403.
/// </summary>
internal sealed partial class RangedFetch
{
    public const long Threshold = 16L << 20;
    public const int ChunkSize = 4 << 20;
    public const int Window = 12;

    private readonly RegistryTransport _transport;
    private readonly IOperationSink _sink;
    private readonly OrasImage _image;
    private readonly Uri _blobUri;
    private readonly string _activity;
    private readonly object _gate = new();
    private readonly List<Task> _workers = new();
    private readonly IRangeStore? _store;
    private Uri? _cdn;
    private int _allowed;
    private int _running;
    private int _spawned;
    private long _pauseUntil;
    private volatile bool _fallback;
    private bool _probed;
    private Exception? _failure;

    public RangedFetch(RegistryTransport transport, IOperationSink sink, OrasImage image, Uri blobUri, string activity, IRangeStore? store = null)
    {
        _store = store;
        _transport = transport;
        _sink = sink;
        _image = image;
        _blobUri = blobUri;
        _activity = activity;
        _allowed = Math.Max(1, transport.Options.ConnectionLimit);
    }

    /// <summary>Worth it: more than one connection allowed and enough bytes left.</summary>
    public static bool Applies(RegistryOptions options, long remaining) => options.ConnectionLimit > 1 && remaining >= Threshold;

    /// <summary>Hands on [start, n) in order and returns n: the size when done, less when the server made it fall back.</summary>
    public async Task<long> RunAsync(long start, IncrementalHash hash, RegistryClient.BlobWriter write, Action connected, CancellationToken ct)
    {
        long size = _image.Size;
        long chunks = (size - start + ChunkSize - 1) / ChunkSize;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using var buffer = new ReorderBuffer(Window);
        long position = start;
        _sink.Verbose($"Fetching blob {Units.ShortDigest(_image.Digest)} as {chunks} ranges over up to {_allowed} connections.");
        Spawn(start, size, chunks, buffer, connected, stop);
        var growth = new ConnectionGrowth();
        // From a kept prefix (a resumed install) the reader first decodes those bytes from the disk and takes none of
        // these for a while, so it never waits on the network then and growth would not judge the link until the
        // window was drained: the tail came in on one or two connections after the decoder had caught up (measured,
        // 85 MiB at 40 MB/s per connection). So once the probe holds, every allowed connection opens; the window
        // bounds what they fetch ahead, on any link.
        bool headStart = start > 0;
        try
        {
            while (true)
            {
                if (buffer.TryTakeNext() is { } pieces)
                {
                    if (headStart && Volatile.Read(ref _probed))
                    {
                        headStart = false;
                        while (!_fallback && Volatile.Read(ref _spawned) < Math.Min(Volatile.Read(ref _allowed), chunks - buffer.NextDeliver))
                        {
                            Spawn(start, size, chunks, buffer, connected, stop);
                        }

                        if (Volatile.Read(ref _spawned) > 1)
                        {
                            _sink.Verbose($"Opened {Volatile.Read(ref _spawned)} connections for the rest of blob {Units.ShortDigest(_image.Digest)}: it is resumed, and its reader decodes the kept part first.");
                        }
                    }

                    long before = position;
                    foreach (var (piece, count) in pieces)
                    {
                        hash.AppendData(piece, 0, count);
                    }

                    // The writer owns each buffer from here on, so hand them over one by one and forget the list.
                    for (int i = 0; i < pieces.Count; i++)
                    {
                        var (piece, count) = pieces[i];
                        pieces[i] = (Array.Empty<byte>(), 0);
                        await write(piece, count, ct).ConfigureAwait(false);
                        position += count;
                    }

                    if (Volatile.Read(ref _probed) && growth.Delivered(Stopwatch.GetTimestamp(), position - before) && !_fallback
                        && Volatile.Read(ref _spawned) < Volatile.Read(ref _allowed) && buffer.NextDeliver < chunks)
                    {
                        Spawn(start, size, chunks, buffer, connected, stop);
                        _sink.Verbose($"Opened connection {Volatile.Read(ref _spawned)} of up to {Volatile.Read(ref _allowed)} for blob {Units.ShortDigest(_image.Digest)}: the reader was waiting on the network.");
                    }

                    _sink.Progress(new ProgressInfo(_activity, "Download", position, size));
                    continue;
                }

                if (buffer.NextDeliver == chunks || Volatile.Read(ref _running) == 0)
                {
                    break;
                }

                long waitFrom = Stopwatch.GetTimestamp();
                await buffer.WaitAsync(stop.Token).ConfigureAwait(false);
                growth.Waited(Stopwatch.GetTimestamp() - waitFrom);
            }
        }
        catch (OperationCanceledException) when (_failure is not null && !ct.IsCancellationRequested)
        {
            ExceptionDispatchInfo.Throw(_failure);
        }
        finally
        {
            stop.Cancel();
            Task[] all;
            lock (_gate)
            {
                all = _workers.ToArray();
            }

            try
            {
                await Task.WhenAll(all).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // Recorded in _failure; the workers' own cancellation is expected here.
            }
        }

        if (_failure is not null)
        {
            ExceptionDispatchInfo.Throw(_failure);
        }

        if (position < size)
        {
            _sink.Verbose($"Continuing blob {Units.ShortDigest(_image.Digest)} on one connection from {Units.Bytes(position)}.");
        }

        return position;
    }

    private void Spawn(long start, long size, long chunks, ReorderBuffer buffer, Action connected, CancellationTokenSource stop)
    {
        int id = Interlocked.Increment(ref _spawned) - 1;
        Interlocked.Increment(ref _running);
        lock (_gate)
        {
            _workers.Add(Task.Run(() => WorkerAsync(id, start, size, chunks, buffer, connected, stop)));
        }
    }

    private async Task WorkerAsync(int id, long start, long size, long chunks, ReorderBuffer buffer, Action connected, CancellationTokenSource stop)
    {
        try
        {
            while (!_fallback && id < Volatile.Read(ref _allowed))
            {
                if (await buffer.ClaimAsync(chunks, stop.Token).ConfigureAwait(false) is not long index)
                {
                    return;
                }

                long from = start + (index * ChunkSize);
                long end = Math.Min(size, from + ChunkSize);
                var pieces = new List<(byte[] Buffer, int Count)>();
                bool whole = false;
                bool local = _store?.IsStored(from, end - from) == true;
                try
                {
                    if (local)
                    {
                        // Kept by an earlier run: read back for the in-order hash, not fetched again.
                        await _store!.ReadAsync(from, end, pieces, stop.Token).ConfigureAwait(false);
                        whole = true;
                    }
                    else
                    {
                        whole = await FetchRangeAsync(from, end, pieces, stop.Token).ConfigureAwait(false);
                        if (whole && _store is not null)
                        {
                            whole = false;
                            await _store.StoreAsync(from, pieces, stop.Token).ConfigureAwait(false);
                            whole = true;
                        }
                    }
                }
                finally
                {
                    if (!whole)
                    {
                        ReorderBuffer.Return(pieces);
                    }
                }

                if (!whole)
                {
                    _fallback = true;
                    return;
                }

                buffer.Complete(index, pieces);
                if (id == 0 && !local && !Volatile.Read(ref _probed))
                {
                    // The probe held: the server honours Range with the right length, so the reader may open others.
                    connected();
                    Volatile.Write(ref _probed, true);
                }
            }
        }
        catch (Exception ex) when (!(ex is OperationCanceledException && stop.IsCancellationRequested))
        {
            Interlocked.CompareExchange(ref _failure, ex, null);
            stop.Cancel();
        }
        finally
        {
            Interlocked.Decrement(ref _running);
            buffer.Abandon();
        }
    }
}
