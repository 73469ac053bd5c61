using System.Buffers;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;

namespace OrasStaging.Oci;

public sealed partial class RegistryClient
{
    /// <summary>Receives one filled buffer and takes ownership of it (returns it to ArrayPool.Shared).</summary>
    internal delegate ValueTask BlobWriter(byte[] buffer, int count, CancellationToken ct);

    #region Streaming

    public async Task<Stream> OpenBlobAsync(OrasImage image, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(image);
        var channel = Channel.CreateBounded<(byte[] Buffer, int Count)>(new BoundedChannelOptions(16)
        {
            SingleReader = true,
            SingleWriter = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var connected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var producer = Task.Run(async () =>
        {
            try
            {
                await FetchAsync(image, 0, null,
                    (buffer, count, token) => channel.Writer.WriteAsync((buffer, count), token),
                    rewind: null, () => connected.TrySetResult(), stop.Token).ConfigureAwait(false);
                channel.Writer.TryComplete();
                connected.TrySetResult();
            }
            catch (Exception ex)
            {
                channel.Writer.TryComplete(ex);
                connected.TrySetException(ex);
            }
        }, CancellationToken.None);

        try
        {
            await connected.Task.ConfigureAwait(false);
        }
        catch
        {
            stop.Cancel();
            stop.Dispose();
            throw;
        }

        return new VerifiedBlobStream(channel.Reader, stop, producer, image.Size);
    }

    /// <summary>The consumer side of the pipe: hashing and resume happen in the producer, ahead of the reader.</summary>
    private sealed class VerifiedBlobStream : ForwardReadStream
    {
        private readonly ChannelReader<(byte[] Buffer, int Count)> _reader;
        private readonly CancellationTokenSource _stop;
        private readonly Task _producer;
        private readonly long _length;
        private byte[]? _current;
        private int _count;
        private int _offset;
        private long _position;
        private bool _disposed;

        public VerifiedBlobStream(ChannelReader<(byte[], int)> reader, CancellationTokenSource stop, Task producer, long length)
        {
            _reader = reader;
            _stop = stop;
            _producer = producer;
            _length = length;
        }

        public override long Length => _length;

        public override long Position { get => _position; set => throw new NotSupportedException(); }

        public override int Read(Span<byte> buffer)
        {
            if (!EnsureChunkSync())
            {
                return 0;
            }

            return CopyOut(buffer);
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (buffer.Length == 0)
            {
                return 0;
            }

            while (_current is null || _offset == _count)
            {
                Release();
                if (_reader.TryRead(out var chunk))
                {
                    (_current, _count, _offset) = (chunk.Buffer, chunk.Count, 0);
                    continue;
                }

                // Throws the producer's failure (DigestMismatch, RegistryUnavailable…) instead of a clean EOF.
                if (!await _reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    return 0;
                }
            }

            return CopyOut(buffer.Span);
        }

        private bool EnsureChunkSync()
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            while (_current is null || _offset == _count)
            {
                Release();
                if (_reader.TryRead(out var chunk))
                {
                    (_current, _count, _offset) = (chunk.Buffer, chunk.Count, 0);
                    continue;
                }

                var wait = _reader.WaitToReadAsync();
                bool more = wait.IsCompletedSuccessfully ? wait.Result : wait.AsTask().GetAwaiter().GetResult();
                if (!more)
                {
                    return false;
                }
            }

            return true;
        }

        private int CopyOut(Span<byte> destination)
        {
            int n = Math.Min(destination.Length, _count - _offset);
            _current.AsSpan(_offset, n).CopyTo(destination);
            _offset += n;
            _position += n;
            return n;
        }

        private void Release()
        {
            if (_current is not null)
            {
                ArrayPool<byte>.Shared.Return(_current);
                _current = null;
            }
        }

        public override void Flush()
        {
        }

        protected override void Dispose(bool disposing)
        {
            if (!_disposed && disposing)
            {
                _disposed = true;
                _stop.Cancel();
                // The producer ends promptly on cancellation; wait briefly so no request outlives the stream.
                try
                {
                    _producer.Wait(TimeSpan.FromSeconds(5));
                }
                catch (AggregateException)
                {
                }

                Release();
                while (_reader.TryRead(out var chunk))
                {
                    ArrayPool<byte>.Shared.Return(chunk.Buffer);
                }

                _stop.Dispose();
            }

            base.Dispose(disposing);
        }
    }

    #endregion

    #region Download to a file

    public async Task<FileInfo> DownloadBlobAsync(OrasImage image, string destinationFile, bool force, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(image);
        string destination = Path.GetFullPath(destinationFile);
        string name = Path.GetFileName(destination);
        if (File.Exists(destination))
        {
            var existing = new FileInfo(destination);
            if (existing.Length == image.Size
                && await BlobDigest.ComputeFileAsync(destination, image.Digest, ct).ConfigureAwait(false) == image.Digest)
            {
                _sink.Verbose($"{destination} already holds {image.Digest}; skipping the download.");
                return existing;
            }

            if (!force)
            {
                throw new OrasStagingException(ErrorCode.DestinationExists,
                    $"'{destination}' exists and does not hold {image.Digest}.", "Use -Force to replace it, or choose another destination.");
            }
        }

        string folder = Path.GetDirectoryName(destination)!;
        string partial = destination + ".partial";
        FileStream file;
        try
        {
            Directory.CreateDirectory(folder);
            file = new FileStream(partial, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.Asynchronous);
        }
        catch (IOException ex) when (File.Exists(partial) && !CommandsIsDiskFull(ex))
        {
            throw new OrasStagingException(ErrorCode.LockTimeout,
                $"'{partial}' is in use, probably by another download of the same blob.", "Wait for the other download to finish.", ex);
        }
        catch (Exception ex) when (ex is UnauthorizedAccessException || (ex is IOException io && !CommandsIsDiskFull(io)))
        {
            // A parent that is a file, a read-only folder, a missing drive: one stable id for "cannot write there".
            throw new OrasStagingException(ErrorCode.DestinationNotWritable,
                $"Cannot write '{partial}': {ex.Message}",
                $"Choose a destination folder you can write to; every part of '{folder}' must be a folder, not a file.", ex);
        }

        bool keep = true;
        try
        {
            for (int pass = 0; ; pass++)
            {
                long kept = file.Length;
                if (kept > image.Size)
                {
                    _sink.Verbose($"{name}.partial is longer than the blob; starting over.");
                    file.SetLength(0);
                    kept = 0;
                }

                IncrementalHash? prefix = null;
                if (kept > 0)
                {
                    _sink.Verbose($"Resuming {name} at {Units.Bytes(kept)} of {Units.Bytes(image.Size)} (re-hashing the kept part).");
                    prefix = await HashPrefixAsync(file, kept, image, ct).ConfigureAwait(false);
                }

                file.Position = kept;
                var writer = new OverlappedFileWriter(file, ct);
                try
                {
                    await FetchAsync(image, kept, prefix, writer.WriteAsync,
                        rewind: _ => writer.RewindAsync(),
                        null, ct, beforeVerify: writer.DrainAsync).ConfigureAwait(false);
                    break;
                }
                catch (OrasStagingException ex) when (ex.Code == ErrorCode.DigestMismatch && kept > 0 && pass == 0)
                {
                    // The kept prefix may be what was wrong (a different blob, a torn write); one clean retry.
                    _sink.Verbose($"The kept part of {name}.partial did not verify; downloading it again from the start.");
                    await writer.DisposeAsync().ConfigureAwait(false);
                    file.SetLength(0);
                }
                finally
                {
                    await writer.DisposeAsync().ConfigureAwait(false);
                }
            }

            await file.FlushAsync(ct).ConfigureAwait(false);
            file.Flush(flushToDisk: true);
        }
        catch (OrasStagingException ex) when (ex.Code == ErrorCode.DigestMismatch)
        {
            keep = false;
            throw;
        }
        finally
        {
            await file.DisposeAsync().ConfigureAwait(false);
            if (!keep)
            {
                File.Delete(partial);
            }
        }

        File.Move(partial, destination, overwrite: true);
        _sink.Verbose($"Saved {destination} ({Units.Bytes(image.Size)}, {image.Digest}).");
        return new FileInfo(destination);
    }

    private static bool CommandsIsDiskFull(IOException io)
    {
        int code = io.HResult & 0xFFFF;
        return code == 28 || code == 0x70 || code == 0x27;
    }

    private async Task<IncrementalHash> HashPrefixAsync(FileStream file, long length, OrasImage image, CancellationToken ct)
    {
        var hash = BlobDigest.CreateHash(image.Digest);
        file.Position = 0;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        try
        {
            long done = 0;
            while (done < length)
            {
                int read = await file.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, length - done)), ct).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }

                hash.AppendData(buffer, 0, read);
                done += read;
                _sink.Progress(new ProgressInfo($"Checking {Path.GetFileName(file.Name)}", "Verify", done, length));
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        return hash;
    }

    #endregion

    #region The fetch loop

    /// <summary>
    /// Fetches bytes [<paramref name="start"/>, Size) and hands them to <paramref name="write"/>, hashing
    /// everything on the way (on top of <paramref name="prefix"/>, the hash of a kept prefix). Resumes with Range
    /// against the registry URL after drops and stalls; verifies size and digest at the end.
    /// </summary>
    internal async Task FetchAsync(OrasImage image, long start, IncrementalHash? prefix, BlobWriter write,
        Func<CancellationToken, ValueTask>? rewind, Action? connected, CancellationToken ct, Func<Task>? beforeVerify = null)
    {
        if (!ImageReference.IsValidDigest(image.Digest))
        {
            throw new OrasStagingException(ErrorCode.RegistryProtocolError, $"Cannot verify a blob with the digest '{image.Digest}'.");
        }

        var options = _transport.Options;
        long size = image.Size;
        string activity = $"Downloading {image.Title ?? Units.ShortDigest(image.Digest)}";
        Uri blobUri = image.BlobUri ?? BlobUriOf(image.Registry, image.Repository, image.Digest);
        IncrementalHash hash = prefix ?? BlobDigest.CreateHash(image.Digest);
        long position = start;   // bytes hashed, i.e. the offset of the next byte from the server
        long delivered = start;  // bytes handed to the writer (more than position after a restart without rewind)
        int failures = 0;
        Uri? cacheUri = await ProbeCacheAsync(blobUri, ct).ConfigureAwait(false);
        connected ??= () => { };
        try
        {
            while (position < size)
            {
                long? range = position > 0 ? position : null;
                bool fromCache = cacheUri is not null;
                HttpResponseMessage response;
                try
                {
                    response = fromCache
                        ? await SendCacheGetAsync(cacheUri!, range, ct).ConfigureAwait(false)
                        : await _transport.SendAsync(new RegistryRequest(HttpMethod.Get, blobUri, image.Registry, image.Repository,
                            $"blob {Units.ShortDigest(image.Digest)}") { RangeFrom = range }, ct).ConfigureAwait(false);
                }
                catch (Exception ex) when (fromCache && RegistryTransport.IsConnectionFailure(ex, ct))
                {
                    _sink.Verbose($"The cache server failed ({RegistryTransport.Describe(ex)}); going to the registry.");
                    cacheUri = null;
                    continue;
                }

                using (response)
                {
                    if (fromCache && response.StatusCode is not (HttpStatusCode.OK or HttpStatusCode.PartialContent))
                    {
                        _sink.Verbose($"The cache server answered HTTP {(int)response.StatusCode}; going to the registry.");
                        cacheUri = null;
                        continue;
                    }

                    if (response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable)
                    {
                        _sink.Verbose($"The server cannot serve from {Units.Bytes(position)} (HTTP 416); starting over.");
                        await RestartAsync().ConfigureAwait(false);
                        if (range is null)
                        {
                            throw new OrasStagingException(ErrorCode.RegistryProtocolError, $"{image.Registry} answered HTTP 416 to a request without Range.");
                        }

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
                            if (failures++ >= options.MaximumRetryCount)
                            {
                                throw new OrasStagingException(ErrorCode.RegistryProtocolError,
                                    $"{image.Registry} keeps sending wrong ranges for blob {image.Digest}.");
                            }

                            continue;
                        }
                    }
                    else if (response.StatusCode == HttpStatusCode.OK)
                    {
                        if (range is not null)
                        {
                            _sink.Verbose($"The server ignored Range and sent the whole blob; starting over.");
                            await RestartAsync().ConfigureAwait(false);
                        }
                    }
                    else
                    {
                        throw await _transport.ErrorFromAsync(response, new RegistryRequest(HttpMethod.Get, blobUri, image.Registry,
                            image.Repository, $"blob {image.Digest}"), ErrorCode.BlobNotFound, ct).ConfigureAwait(false);
                    }

                    if (response.Content.Headers.ContentLength is long length && length != size - position)
                    {
                        throw new OrasStagingException(ErrorCode.DigestMismatch,
                            $"{image.Registry} serves blob {image.Digest} with {Units.Bytes(position + length)}, but the manifest says {Units.Bytes(size)}.",
                            "The manifest and the blob disagree; the artifact or the registry is broken.");
                    }

                    if (position > 0)
                    {
                        _sink.Verbose($"Resuming blob {Units.ShortDigest(image.Digest)} at {Units.Bytes(position)} of {Units.Bytes(size)}.");
                    }

                    connected();
                    long before = position;
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

                    if (fromCache)
                    {
                        _sink.Verbose($"The cache server dropped the connection ({RegistryTransport.Describe(dropped)}); going to the registry.");
                        cacheUri = null;
                        continue;
                    }

                    failures = position > before ? 1 : failures + 1;
                    if (failures > options.MaximumRetryCount)
                    {
                        throw new OrasStagingException(ErrorCode.RegistryUnavailable,
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

            string actual = BlobDigest.Format(image.Digest, hash.GetHashAndReset());
            if (actual != image.Digest)
            {
                throw new OrasStagingException(ErrorCode.DigestMismatch,
                    $"The downloaded blob hashes to {actual}, not {image.Digest}; the bytes were discarded.",
                    "Run the command again; if it persists, the registry, a proxy or the cache is corrupting data.");
            }

            _sink.Progress(new ProgressInfo(activity, "Download", size, size));
        }
        finally
        {
            hash.Dispose();
        }

        async ValueTask RestartAsync()
        {
            hash.Dispose();
            hash = BlobDigest.CreateHash(image.Digest);
            position = 0;
            if (rewind is not null)
            {
                await rewind(ct).ConfigureAwait(false);
                delivered = 0;
            }
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

                    hash.AppendData(buffer, 0, filled);
                    long end = position + filled;
                    if (end > delivered)
                    {
                        int skip = (int)(delivered - position);
                        if (skip > 0)
                        {
                            Buffer.BlockCopy(buffer, skip, buffer, 0, filled - skip);
                        }

                        owned = false;
                        await write(buffer, filled - Math.Max(skip, 0), ct).ConfigureAwait(false);
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

    #endregion

    #region withcache

    /// <summary>
    /// HEAD &lt;server&gt;/b/&lt;urlsafe-base64(origin URL), unpadded&gt;/&lt;basename&gt; within 3 s; the cache URL on a
    /// hit, null on a miss or any error (the registry is the fallback either way).
    /// </summary>
    internal async Task<Uri?> ProbeCacheAsync(Uri origin, CancellationToken ct)
    {
        string? server = _transport.Options.CacheServer ?? Environment.GetEnvironmentVariable("WITHCACHE_SERVER");
        if (string.IsNullOrWhiteSpace(server))
        {
            return null;
        }

        Uri cacheUri;
        try
        {
            cacheUri = CacheUriFor(server, origin);
        }
        catch (UriFormatException)
        {
            _sink.Warning($"Ignoring the cache server '{Redaction.Text(server)}': it is not an absolute http(s) URL.");
            return null;
        }

        using var budget = CancellationTokenSource.CreateLinkedTokenSource(ct);
        budget.CancelAfter(CacheProbeBudget);
        try
        {
            using var head = new HttpRequestMessage(HttpMethod.Head, cacheUri);
            using var response = await _transport.Http.SendAsync(head, HttpCompletionOption.ResponseHeadersRead, budget.Token).ConfigureAwait(false);
            if (response.IsSuccessStatusCode)
            {
                _sink.Verbose($"Cache hit at {cacheUri.Host}:{cacheUri.Port}; downloading from the cache (the digest is still checked).");
                return cacheUri;
            }

            _sink.Verbose($"Cache miss at {cacheUri.Host}:{cacheUri.Port} (HTTP {(int)response.StatusCode}); going to the registry.");
        }
        catch (Exception ex) when (RegistryTransport.IsConnectionFailure(ex, ct))
        {
            _sink.Verbose($"The cache server {cacheUri.Host}:{cacheUri.Port} did not answer ({RegistryTransport.Describe(ex)}); going to the registry.");
        }

        return null;
    }

    internal static Uri CacheUriFor(string server, Uri origin)
    {
        var serverUri = new Uri(server.TrimEnd('/') + "/", UriKind.Absolute);
        if (serverUri.Scheme is not ("http" or "https"))
        {
            throw new UriFormatException("not http(s)");
        }

        string key = Convert.ToBase64String(Encoding.UTF8.GetBytes(origin.AbsoluteUri)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        string basename = origin.Segments[^1];
        return new Uri(serverUri, "b/" + key + "/" + basename);
    }

    private async Task<HttpResponseMessage> SendCacheGetAsync(Uri cacheUri, long? range, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, cacheUri);
        if (range is long from)
        {
            request.Headers.Range = new System.Net.Http.Headers.RangeHeaderValue(from, null);
        }

        using var headers = CancellationTokenSource.CreateLinkedTokenSource(ct);
        headers.CancelAfter(_transport.Options.StallTimeout);
        return await _transport.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, headers.Token).ConfigureAwait(false);
    }

    #endregion
}
