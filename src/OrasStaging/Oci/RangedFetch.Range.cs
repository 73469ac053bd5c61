using System.Buffers;
using System.Net;

namespace OrasStaging.Oci;

/// <summary>One range over HTTP: the request, the checks on the answer (206 with the asked range and length), the body.</summary>
internal sealed partial class RangedFetch
{
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

                // Against the blob URL as it went out: a loopback registry first asked over https may have been found plain.
                if (cdn is null && response.RequestMessage?.RequestUri is { } final
                    && !RegistryTransport.SameOrigin(final, _transport.RegistryUri(_image.Registry, _blobUri.PathAndQuery)))
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

                PauseEveryone(delay);

                await GiveUpOrWaitAsync(++failures, TimeSpan.Zero, $"HTTP {(int)status}", at, ct).ConfigureAwait(false);
                continue;
            }

            throw await _transport.ErrorFromAsync(response, request, ErrorCode.BlobNotFound, ct).ConfigureAwait(false);
        }

        return true;
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
