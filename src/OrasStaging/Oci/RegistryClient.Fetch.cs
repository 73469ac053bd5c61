using System.Buffers;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;

namespace OrasStaging.Oci;

public sealed partial class RegistryClient
{
    /// <summary>Receives one filled buffer and takes ownership of it (returns it to ArrayPool.Shared).</summary>
    internal delegate ValueTask BlobWriter(byte[] buffer, int count, CancellationToken ct);

    /// <summary>
    /// Fetches bytes [<paramref name="start"/>, Size) and hands them to <paramref name="write"/>, hashing
    /// everything on the way (on top of <paramref name="prefix"/>, the hash of a kept prefix). Resumes with Range
    /// against the registry URL after drops and stalls; verifies size and digest at the end.
    /// </summary>
    internal async Task FetchAsync(OrasImage image, long start, IncrementalHash? prefix, BlobWriter write,
        Func<CancellationToken, ValueTask>? rewind, Action? connected, CancellationToken ct, Func<Task>? beforeVerify = null, IRangeStore? store = null)
    {
        if (!Digest.IsValid(image.Digest))
        {
            throw new OrasStagingException(ErrorCode.RegistryProtocolError, $"Cannot verify a blob with the digest '{image.Digest}'.");
        }

        var options = _transport.Options;
        long size = image.Size;
        string activity = $"Downloading {image.Title ?? Units.ShortDigest(image.Digest)}";
        var plan = BlobPlanOf(image);
        var origin = await _endpoints.EndpointAsync(plan.Sources[^1], ct).ConfigureAwait(false);
        var transport = origin.Transport;
        // Never image.BlobUri: it is settable, and credentials follow Registry, so the URL must come from it too.
        Uri blobUri = transport.RegistryUri(image.Registry, $"/v2/{image.Repository}/blobs/{image.Digest}");
        IncrementalHash hash = prefix ?? Digest.CreateHash(image.Digest);
        long position = start;   // bytes hashed, i.e. the offset of the next byte from the server
        long delivered = start;  // bytes handed to the writer (more than position after a restart without rewind)
        long highWater = start;  // the furthest the download has got; only passing it is progress
        int failures = 0;
        // After a restart without rewind the bytes below `delivered` were already handed on and cannot be taken
        // back: `hash` keeps their state and the re-fetched prefix is hashed apart and compared with it.
        IncrementalHash? recheck = null;
        byte[]? deliveredPrefix = null;
        // The sources before the origin, in order: a withcache hit, then the mirrors. Each is left for the next on
        // its first failure (the bytes it delivered stay; the next one resumes with Range).
        var alternates = new Queue<BlobAlternate>();
        Uri? cacheUri = await _cache.ProbeAsync(blobUri, ct).ConfigureAwait(false);
        if (cacheUri is not null)
        {
            var cacheSource = plan.Sources.FirstOrDefault(s => s.Kind == Mirrors.SourceKind.Cache);
            alternates.Enqueue(new BlobAlternate(cacheSource is null ? $"cache {cacheUri.Authority}" : Mirrors.SourceEndpoint.Describe(cacheSource),
                (range, token) => _cache.GetAsync(cacheUri, range, token)));
        }

        foreach (var mirror in plan.For(Mirrors.SourceRoles.Blob).Where(s => s.Kind == Mirrors.SourceKind.Mirror))
        {
            alternates.Enqueue(MirrorBlob(mirror, image.Digest));
        }

        var skipped = new List<string>();
        BlobAlternate? alt = alternates.Count > 0 ? alternates.Dequeue() : null;
        bool rangedTried = false;
        connected ??= () => { };
        try
        {
            while (position < size)
            {
                if (alt is null && !rangedTried && position == delivered && recheck is null)
                {
                    rangedTried = true;
                    if (RangedFetch.Applies(options, size - position))
                    {
                        RecordBlobSource(image.Digest, origin.Label);
                        position = delivered = await new RangedFetch(transport, _sink, image, blobUri, activity, store).RunAsync(position, hash, write, connected, ct).ConfigureAwait(false);
                        continue;
                    }
                }

                long? range = position > 0 ? position : null;
                bool fromAlt = alt is not null;
                HttpResponseMessage response;
                try
                {
                    response = fromAlt
                        ? await alt!.Get(range, ct).ConfigureAwait(false)
                        : await transport.SendAsync(new RegistryRequest(HttpMethod.Get, blobUri, image.Registry, image.Repository,
                            $"blob {Units.ShortDigest(image.Digest)}") { RangeFrom = range }, ct).ConfigureAwait(false);
                }
                catch (Exception ex) when (fromAlt && Mirrors.SourceTransports.IsSkippable(ex, ct))
                {
                    SkipAlternate(ex is OrasStagingException ? ex.Message : RegistryTransport.Describe(ex));
                    continue;
                }

                using (response)
                {
                    if (fromAlt && response.StatusCode is not (HttpStatusCode.OK or HttpStatusCode.PartialContent))
                    {
                        SkipAlternate($"HTTP {(int)response.StatusCode}");
                        continue;
                    }

                    if (response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable)
                    {
                        _sink.Verbose($"The server cannot serve from {Units.Bytes(position)} (HTTP 416); starting over.");
                        if (range is null)
                        {
                            throw new OrasStagingException(ErrorCode.RegistryProtocolError, $"{image.Registry} answered HTTP 416 to a request without Range.");
                        }

                        await RestartAsync().ConfigureAwait(false);
                        CountRestart("answers HTTP 416 to ranges it should have");
                        continue;
                    }

                    if (response.StatusCode == HttpStatusCode.PartialContent)
                    {
                        var contentRange = response.Content.Headers.ContentRange;
                        if (range is null || contentRange is null || contentRange.From != position
                            || (contentRange.Length is long total && total != size))
                        {
                            _sink.Verbose($"The server sent a range that does not start at {Units.Bytes(position)} ({contentRange?.ToString() ?? "no Content-Range"}); starting over.");
                            await RestartAsync().ConfigureAwait(false);
                            CountRestart("keeps sending wrong ranges");
                            continue;
                        }
                    }
                    else if (response.StatusCode == HttpStatusCode.OK)
                    {
                        if (range is not null)
                        {
                            _sink.Verbose($"The server ignored Range and sent the whole blob; starting over.");
                            await RestartAsync().ConfigureAwait(false);
                            CountRestart("ignores Range, so the download cannot resume");
                        }
                    }
                    else
                    {
                        throw await transport.ErrorFromAsync(response, new RegistryRequest(HttpMethod.Get, blobUri, image.Registry,
                            image.Repository, $"blob {image.Digest}"), ErrorCode.BlobNotFound, ct).ConfigureAwait(false);
                    }

                    if (response.Content.Headers.ContentLength is long length && length != size - position)
                    {
                        if (fromAlt)
                        {
                            SkipAlternate($"it serves {Units.Bytes(position + length)}, not {Units.Bytes(size)}");
                            continue;
                        }

                        throw new OrasStagingException(ErrorCode.DigestMismatch,
                            $"{image.Registry} serves blob {image.Digest} with {Units.Bytes(position + length)}, but the manifest says {Units.Bytes(size)}.",
                            "The manifest and the blob disagree; the artifact or the registry is broken.");
                    }

                    if (position > 0)
                    {
                        _sink.Verbose($"Resuming blob {Units.ShortDigest(image.Digest)} at {Units.Bytes(position)} of {Units.Bytes(size)}.");
                    }

                    RecordBlobSource(image.Digest, alt?.Label ?? origin.Label);
                    connected();
                    Exception? dropped = null;
                    try
                    {
                        await CopyBodyAsync(response).ConfigureAwait(false);
                    }
                    catch (Exception ex) when (RegistryTransport.IsConnectionFailure(ex, ct))
                    {
                        dropped = ex;
                    }

                    if (dropped is null && position < size)
                    {
                        dropped = new IOException("the connection closed early");
                    }

                    if (dropped is null)
                    {
                        break;
                    }

                    if (fromAlt)
                    {
                        SkipAlternate($"the connection dropped at {Units.Bytes(position)} ({RegistryTransport.Describe(dropped)})");
                        continue;
                    }

                    // Bytes fetched again after a restart are not progress: only passing the high-water mark is.
                    failures = position > highWater ? 1 : failures + 1;
                    highWater = Math.Max(highWater, position);
                    if (failures > options.MaximumRetryCount)
                    {
                        throw new OrasStagingException(GiveUp.CodeFor(dropped),
                            $"The download of blob {image.Digest} from {image.Registry} kept failing at {Units.Bytes(position)} of {Units.Bytes(size)}: {RegistryTransport.Describe(dropped)}.",
                            "Run the command again to resume; -MaximumRetryCount and -RetryIntervalSec control retries.", dropped);
                    }

                    var delay = RetryPolicy.Backoff(failures - 1, options.RetryIntervalSec);
                    _sink.Verbose($"Connection lost at {Units.Bytes(position)} of {Units.Bytes(size)} ({RegistryTransport.Describe(dropped)}); " +
                        $"resuming in {delay.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture)} s (retry {failures} of {options.MaximumRetryCount}).");
                    await Task.Delay(delay, ct).ConfigureAwait(false);
                }
            }

            connected();
            if (beforeVerify is not null)
            {
                await beforeVerify().ConfigureAwait(false);
            }

            string actual = Digest.Format(image.Digest, hash.GetHashAndReset());
            if (!Digest.AreEqual(actual, image.Digest))
            {
                throw new OrasStagingException(ErrorCode.DigestMismatch,
                    $"The downloaded blob hashes to {actual}, not {image.Digest}; the bytes were discarded.",
                    "Run the command again; if it persists, the registry, a proxy or the cache is corrupting data.");
            }

            _sink.Progress(new ProgressInfo(activity, "Download", size, size));
        }
        catch (OrasStagingException ex) when (skipped.Count > 0 && ex.Code != ErrorCode.DigestMismatch)
        {
            throw Mirrors.SourceTransports.WithFailures(ex, skipped);
        }
        finally
        {
            hash.Dispose();
            recheck?.Dispose();
        }

        void SkipAlternate(string reason)
        {
            string next = alternates.Count > 0 ? alternates.Peek().Label : origin.Label;
            skipped.Add($"{alt!.Label}: {reason}");
            _sink.Verbose($"Skipping {alt.Label} for blob {Units.ShortDigest(image.Digest)}: {reason}; trying {next}" +
                (position > 0 ? $" from {Units.Bytes(position)}." : "."));
            alt = alternates.Count > 0 ? alternates.Dequeue() : null;
        }

        // A restart counts as a failure; the next attempt resets the count only if it gets past the high-water mark.
        void CountRestart(string what)
        {
            if (++failures > options.MaximumRetryCount)
            {
                throw new OrasStagingException(ErrorCode.RegistryProtocolError,
                    $"{image.Registry} {what} for blob {image.Digest}; gave up after {options.MaximumRetryCount} restarts.",
                    "Run the command again; if it persists, the registry or a proxy in front of it mishandles Range requests.");
            }
        }

        async ValueTask RestartAsync()
        {
            position = 0;
            if (rewind is not null)
            {
                await rewind(ct).ConfigureAwait(false);
                hash.Dispose();
                hash = Digest.CreateHash(image.Digest);
                delivered = 0;
                recheck?.Dispose();
                recheck = null;
                deliveredPrefix = null;
                return;
            }

            if (delivered == 0)
            {
                hash.Dispose();
                hash = Digest.CreateHash(image.Digest);
                return;
            }

            // Without rewind the delivered bytes stay delivered: keep `hash` at that offset (so the final digest is
            // over exactly what the writer got) and check that the server sends the same prefix again.
            deliveredPrefix ??= hash.GetCurrentHash();
            recheck?.Dispose();
            recheck = Digest.CreateHash(image.Digest);
        }

        // Hashes the part of a re-fetched body below `delivered` apart; at `delivered`, it must equal what was handed on.
        int RecheckPrefix(byte[] buffer, int filled)
        {
            if (recheck is null || position >= delivered)
            {
                return 0;
            }

            int below = (int)Math.Min(filled, delivered - position);
            recheck.AppendData(buffer, 0, below);
            if (position + below == delivered)
            {
                bool same = CryptographicOperations.FixedTimeEquals(recheck.GetHashAndReset(), deliveredPrefix);
                recheck.Dispose();
                recheck = null;
                deliveredPrefix = null;
                if (!same)
                {
                    throw new OrasStagingException(ErrorCode.DigestMismatch,
                        $"{image.Registry} sent different bytes for the first {Units.Bytes(delivered)} of blob {image.Digest} when the download restarted; the bytes were discarded.",
                        "Run the command again; if it persists, the registry, a proxy or the cache is corrupting data.");
                }
            }

            return below;
        }

        async Task CopyBodyAsync(HttpResponseMessage response)
        {
            using var stall = CancellationTokenSource.CreateLinkedTokenSource(ct);
            await using var body = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
            while (true)
            {
                byte[] buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
                int filled = 0;
                bool owned = true;
                Exception? dropped = null;
                try
                {
                    // Fill a good part of the buffer so the consumer gets large chunks.
                    while (filled < buffer.Length / 2)
                    {
                        int read;
                        try
                        {
                            stall.CancelAfter(options.StallTimeout);
                            read = await body.ReadAsync(buffer.AsMemory(filled), stall.Token).ConfigureAwait(false);
                        }
                        catch (Exception ex) when (RegistryTransport.IsConnectionFailure(ex, ct))
                        {
                            // Keep what arrived before the drop: the resume starts after it.
                            dropped = ex;
                            break;
                        }

                        if (read == 0)
                        {
                            break;
                        }

                        filled += read;
                        if (position + filled > size)
                        {
                            throw new OrasStagingException(ErrorCode.DigestMismatch,
                                $"{image.Registry} sent more than the {Units.Bytes(size)} the manifest gives blob {image.Digest}; the bytes were discarded.");
                        }
                    }

                    if (filled == 0)
                    {
                        if (dropped is not null)
                        {
                            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(dropped);
                        }

                        return;
                    }

                    int skip = RecheckPrefix(buffer, filled);
                    long end = position + filled;
                    if (end > delivered)
                    {
                        if (skip > 0)
                        {
                            Buffer.BlockCopy(buffer, skip, buffer, 0, filled - skip);
                        }

                        hash.AppendData(buffer, 0, filled - skip);
                        owned = false;
                        await write(buffer, filled - skip, ct).ConfigureAwait(false);
                        delivered = end;
                    }

                    position = end;
                    _sink.Progress(new ProgressInfo(activity, "Download", position, size));
                    if (dropped is not null)
                    {
                        System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(dropped);
                    }
                }
                finally
                {
                    if (owned)
                    {
                        ArrayPool<byte>.Shared.Return(buffer);
                    }
                }
            }
        }
    }
}

