using System.Buffers;
using System.Security.Cryptography;
using OrasStaging.IO;
using DigestRules = OrasStaging.Oci.Digest;

namespace OrasStaging.Staging;

/// <summary>A source that can continue a blob from an offset, on top of the hash of the bytes before it.</summary>
internal interface IResumableStagingSource
{
    /// <summary>
    /// Bytes [<paramref name="start"/>, Size), verified at the end against the digest over <paramref name="prefix"/>
    /// (the hash of [0, start), whose ownership passes to the source) and what follows.
    /// </summary>
    Task<Stream> OpenBlobFromAsync(ResolvedLayer layer, long start, IncrementalHash prefix, CancellationToken cancellationToken);
}

/// <summary>
/// Wraps the install's source so what it receives is kept in a <see cref="ResumePrefix"/>, and a prefix a killed run
/// left is used: hashed and handed to the decoder from the disk, the rest asked of the network with Range. The
/// verified end commits the prefix (the kept blob with -KeepBlob, otherwise deleted); a digest mismatch removes it.
/// </summary>
internal sealed class ResumingSource(IStagingSource inner, ResumePrefix prefix, IOperationSink sink) : IStagingSource
{
    public Task<ResolvedLayer> ResolveAsync(CancellationToken cancellationToken) => inner.ResolveAsync(cancellationToken);

    public async Task<Stream> OpenBlobAsync(ResolvedLayer layer, CancellationToken cancellationToken)
    {
        if (OpenPrefix() is not { } file)
        {
            return await inner.OpenBlobAsync(layer, cancellationToken).ConfigureAwait(false);
        }

        try
        {
            long kept = inner is IResumableStagingSource ? prefix.ReusableBytes(layer, file.Length) : 0;
            if (kept == 0 && file.Length > 0)
            {
                // Never truncated to 0, not even a new empty file: ext4 (auto_da_alloc) takes a truncate to 0 for
                // "replace the contents" and writes the whole file out when it is closed, so a prefix deleted a
                // moment after the install would still reach the disk, beside the image's fsync (477 MB more
                // written per install of the 453 MiB bench blob, measured). An unusable prefix is deleted and
                // created again instead; a file already at the right length is left alone.
                await file.DisposeAsync().ConfigureAwait(false);
                PartialFile.TryDelete(prefix.Path);
                if (OpenPrefix() is not { } fresh)
                {
                    return await inner.OpenBlobAsync(layer, cancellationToken).ConfigureAwait(false);
                }

                file = fresh;
            }
            else if (file.Length != kept)
            {
                file.SetLength(kept);
            }

            prefix.WriteRecord(layer, kept);
            Task<Stream> rest;
            if (kept > 0)
            {
                sink.Verbose($"Resuming {Units.ShortDigest(layer.Digest)} at {Units.Bytes(kept)} of {Units.Bytes(layer.Size)} from '{prefix.Path}' (re-hashing and decoding the kept part).");
                // The decoder starts on the kept bytes at once; re-hashing them and asking the network for the rest
                // happen meanwhile (0.2 s each for the 370 MiB of a resumed bench run, measured, that came first).
                rest = Task.Run(async () =>
                {
                    var hash = await HashAsync(file, kept, layer.Digest, cancellationToken).ConfigureAwait(false);
                    return await ((IResumableStagingSource)inner).OpenBlobFromAsync(layer, kept, hash, cancellationToken).ConfigureAwait(false);
                }, CancellationToken.None);
            }
            else
            {
                rest = Task.FromResult(await inner.OpenBlobAsync(layer, cancellationToken).ConfigureAwait(false));
            }

            // Appending to the prefix happens on the read-ahead's thread, not the decoder's.
            return new ReadAheadStream(new ResumeStream(file, kept, rest, prefix, layer, sink, cancellationToken), cancellationToken: cancellationToken);
        }
        catch
        {
            await file.DisposeAsync().ConfigureAwait(false);
            if (cancellationToken.IsCancellationRequested || prefix.ReadRecord() is not { Offset: > 0 })
            {
                // Nothing received (a refusal, a missing blob) or the user stopped: nothing is left behind.
                prefix.Delete();
            }

            throw;
        }
    }

    /// <summary>The prefix file, or null when another install of the same blob into the same -KeepBlob folder holds it.</summary>
    private FileStream? OpenPrefix()
    {
        try
        {
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(prefix.Path)!);
            return new FileStream(prefix.Path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.Asynchronous);
        }
        catch (IOException ex) when (File.Exists(prefix.Path) && !DiskSpace.IsDiskFull(ex))
        {
            // This run neither resumes nor keeps.
            sink.Verbose($"'{prefix.Path}' is in use by another run; this download is neither resumable nor kept.");
            return null;
        }
    }

    private static async Task<IncrementalHash> HashAsync(FileStream file, long length, string digest, CancellationToken ct)
    {
        var hash = DigestRules.CreateHash(digest);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(1 << 20);
        try
        {
            long done = 0;
            while (done < length)
            {
                int read = await RandomAccess.ReadAsync(file.SafeFileHandle, buffer.AsMemory(0, (int)Math.Min(buffer.Length, length - done)), done, ct)
                    .ConfigureAwait(false);
                if (read == 0)
                {
                    throw new EndOfStreamException($"'{file.Name}' ended early.");
                }

                hash.AppendData(buffer, 0, read);
                done += read;
            }

            return hash;
        }
        catch
        {
            hash.Dispose();
            throw;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
