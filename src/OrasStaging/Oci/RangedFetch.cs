using System.Buffers;
using System.Globalization;
using System.Net;
using System.Runtime.ExceptionServices;
using System.Security.Cryptography;

namespace OrasStaging.Oci;

/// <summary>
/// One blob over several connections: [start, size) is cut into <see cref="ChunkSize"/> ranges, fetched by up to
/// <see cref="RegistryOptions.ConnectionLimit"/> workers at once and handed on in order (hashed, then written)
/// through a <see cref="ReorderBuffer"/>, so the digest check and the decoder see one ordered stream and memory stays
/// at <see cref="Window"/> x <see cref="ChunkSize"/>. Why: one TCP connection to a CDN is often capped far below the
/// link (issue 12). The first range is a probe: a server that ignores Range, or answers another range or length,
/// makes <see cref="RunAsync"/> return where the ordered bytes end, and the caller's single-connection loop goes on
/// from there; later ranges that do the same stop the workers the same way, without losing a delivered byte.
/// Each range resumes on its own after a drop (the retry policy's count and backoff); a Retry-After pauses every
/// worker; a 429 takes one connection away. A redirect to another host (a CDN's signed URL) is kept for the next
/// ranges, sent anonymously, and re-resolved through the registry when the CDN answers 401 or 403.
/// </summary>
internal sealed class RangedFetch
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
    private Uri? _cdn;
    private int _allowed;
    private int _running;
    private long _pauseUntil;
    private volatile bool _fallback;
    private Exception? _failure;

    public RangedFetch(RegistryTransport transport, IOperationSink sink, OrasImage image, Uri blobUri, string activity)
    {
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
        Spawn(0, start, size, chunks, buffer, connected, stop);
        try
        {
            while (true)
            {
                if (buffer.TryTakeNext() is { } pieces)
                {
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

                    _sink.Progress(new ProgressInfo(_activity, "Download", position, size));
                    continue;
                }

                if (buffer.NextDeliver == chunks || Volatile.Read(ref _running) == 0)
                {
                    break;
                }

                await buffer.WaitAsync(stop.Token).ConfigureAwait(false);
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

    private void Spawn(int id, long start, long size, long chunks, ReorderBuffer buffer, Action connected, CancellationTokenSource stop)
    {
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
                try
                {
                    whole = await FetchRangeAsync(from, end, pieces, stop.Token).ConfigureAwait(false);
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
                if (id == 0 && index == 0)
                {
                    // The probe held: the server honours Range with the right length, so the others may start.
                    connected();
                    for (int other = 1; other < _allowed; other++)
                    {
                        Spawn(other, start, size, chunks, buffer, connected, stop);
                    }
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

    /// <summary>[from, end) into <paramref name="pieces"/>; false when the server does not serve that range as asked.</summary>
    private async Task<bool> FetchRangeAsync(long from, long end, List<(byte[] Buffer, int Count)> pieces, CancellationToken ct)
    {
        var options = _transport.Options;
        long got = 0;
        int failures = 0;
        while (from + got < end)
        {
            await PauseAsync(ct).ConfigureAwait(false);
            Uri? cdn = _cdn;
            long at = from + got;
            var request = new RegistryRequest(HttpMethod.Get, cdn ?? _blobUri, _image.Registry, _image.Repository,
                $"blob {Units.ShortDigest(_image.Digest)} bytes {at}-{end - 1}")
            { RangeFrom = at, RangeTo = end - 1, RetryTransient = false, Anonymous = cdn is not null };
            using var response = await _transport.SendAsync(request, ct).ConfigureAwait(false);
            var status = response.StatusCode;
            if (status == HttpStatusCode.PartialContent)
            {
                var range = response.Content.Headers.ContentRange;
                if (range is null || range.From != at || range.To != end - 1 || range.Length != _image.Size
                    || (response.Content.Headers.ContentLength is long length && length != end - at))
                {
                    _sink.Verbose($"The server answered bytes {at}-{end - 1} with {range?.ToString() ?? "no Content-Range"}; using one connection.");
                    return false;
                }

                if (cdn is null && response.RequestMessage?.RequestUri is { } final && !RegistryTransport.SameOrigin(final, _blobUri))
                {
                    _cdn = final;
                }

                long before = got;
                Exception? dropped = await CopyAsync(response, end - at, pieces, ct).ConfigureAwait(false);
                got = pieces.Sum(p => (long)p.Count);
                if (dropped is null)
                {
                    continue;
                }

                failures = got > before ? 1 : failures + 1;
                await GiveUpOrWaitAsync(failures, RetryPolicy.Backoff(failures - 1, options.RetryIntervalSec), RegistryTransport.Describe(dropped), at, ct, dropped).ConfigureAwait(false);
                continue;
            }

            if (status is HttpStatusCode.OK or HttpStatusCode.RequestedRangeNotSatisfiable)
            {
                _sink.Verbose($"The server answered a Range request with HTTP {(int)status}; using one connection.");
                return false;
            }

            if (cdn is not null && status is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
            {
                // A signed URL that expired: the registry signs a new one.
                _sink.Verbose($"{cdn.Host} refused the kept URL (HTTP {(int)status}); asking {_image.Registry} again.");
                Interlocked.CompareExchange(ref _cdn, null, cdn);
                await GiveUpOrWaitAsync(++failures, TimeSpan.Zero, $"HTTP {(int)status}", at, ct).ConfigureAwait(false);
                continue;
            }

            if (RetryPolicy.IsTransient(status))
            {
                var delay = RetryPolicy.Backoff(failures, options.RetryIntervalSec);
                if (RetryPolicy.ParseRetryAfter(response.Headers.RetryAfter, DateTimeOffset.UtcNow) is { } after && after > delay)
                {
                    delay = after;
                }

                if (status == HttpStatusCode.TooManyRequests && ReduceConnections() is int left)
                {
                    _sink.Verbose($"{_image.Registry} answered HTTP 429; down to {left} connections.");
                }

                // Retry-After is the server's word for the whole download, not for this range alone.
                long until = DateTime.UtcNow.Add(delay).Ticks;
                long seen;
                while ((seen = Interlocked.Read(ref _pauseUntil)) < until && Interlocked.CompareExchange(ref _pauseUntil, until, seen) != seen)
                {
                }

                await GiveUpOrWaitAsync(++failures, TimeSpan.Zero, $"HTTP {(int)status}", at, ct).ConfigureAwait(false);
                continue;
            }

            throw await _transport.ErrorFromAsync(response, request, ErrorCode.BlobNotFound, ct).ConfigureAwait(false);
        }

        return true;
    }

    private async Task GiveUpOrWaitAsync(int failures, TimeSpan delay, string cause, long at, CancellationToken ct, Exception? dropped = null)
    {
        var options = _transport.Options;
        if (failures > options.MaximumRetryCount)
        {
            throw new OrasStagingException(GiveUp.CodeFor(dropped),
                $"The download of blob {_image.Digest} from {_image.Registry} kept failing at {Units.Bytes(at)} of {Units.Bytes(_image.Size)}: {cause}.",
                "Run the command again to resume; -MaximumRetryCount and -RetryIntervalSec control retries.");
        }

        _sink.Verbose($"Range at {Units.Bytes(at)}: {cause}; retry {failures} of {options.MaximumRetryCount}" +
            (delay > TimeSpan.Zero ? $" in {delay.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture)} s." : "."));
        if (delay > TimeSpan.Zero)
        {
            await Task.Delay(delay, ct).ConfigureAwait(false);
        }
    }

    private async Task PauseAsync(CancellationToken ct)
    {
        var wait = new DateTime(Interlocked.Read(ref _pauseUntil), DateTimeKind.Utc) - DateTime.UtcNow;
        if (wait > TimeSpan.Zero)
        {
            await Task.Delay(wait, ct).ConfigureAwait(false);
        }
    }

    private int? ReduceConnections()
    {
        while (true)
        {
            int now = Volatile.Read(ref _allowed);
            if (now <= 1)
            {
                return null;
            }

            if (Interlocked.CompareExchange(ref _allowed, now - 1, now) == now)
            {
                return now - 1;
            }
        }
    }

    /// <summary>Up to <paramref name="want"/> body bytes into pooled buffers; the drop, if the body ended early.</summary>
    private async Task<Exception?> CopyAsync(HttpResponseMessage response, long want, List<(byte[] Buffer, int Count)> pieces, CancellationToken ct)
    {
        var options = _transport.Options;
        using var stall = CancellationTokenSource.CreateLinkedTokenSource(ct);
        try
        {
            await using var body = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
            long got = 0;
            while (got < want)
            {
                byte[] buffer = ArrayPool<byte>.Shared.Rent(RegistryClient.BufferSize);
                int filled = 0;
                Exception? dropped = null;
                try
                {
                    while (filled < buffer.Length && got + filled < want)
                    {
                        stall.CancelAfter(options.StallTimeout);
                        int read = await body.ReadAsync(buffer.AsMemory(filled, (int)Math.Min(buffer.Length - filled, want - got - filled)), stall.Token).ConfigureAwait(false);
                        if (read == 0)
                        {
                            dropped = new IOException("the connection closed early");
                            break;
                        }

                        filled += read;
                    }
                }
                catch (Exception ex) when (RegistryTransport.IsConnectionFailure(ex, ct))
                {
                    dropped = ex;
                }

                if (filled > 0)
                {
                    pieces.Add((buffer, filled));
                    got += filled;
                }
                else
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }

                if (dropped is not null)
                {
                    return dropped;
                }
            }

            return null;
        }
        catch (Exception ex) when (RegistryTransport.IsConnectionFailure(ex, ct))
        {
            return ex;
        }
    }
}
