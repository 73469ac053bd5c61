using OrasStaging.DiskImages;
using OrasStaging.IO;

namespace OrasStaging.Staging;

/// <summary>
/// The one pass of a staging run: the verified blob (from the registry, or kept with -KeepBlob) streams through
/// the decoder into the partial file, and is read to its end so the digest is checked before anything commits.
/// </summary>
internal sealed class OnePassWrite(IStagingSource source, IStagingWriter writer, IOperationSink sink)
{

    /// <summary>
    /// Writes <paramref name="partialPath"/> from the blob; with <paramref name="cache"/> and not
    /// <paramref name="fromCache"/>, also keeps the verified blob there.
    /// </summary>
    public async Task<WrittenImage> WriteAsync(ResolvedLayer layer, BlobCache? cache, bool fromCache, string partialPath,
        CancellationToken cancellationToken)
    {
        TeeStream? tee = null;
        try
        {
            Stream blob;
            if (fromCache)
            {
                sink.Verbose($"Reading the kept blob {cache!.PathFor(layer.Digest)}.");
                blob = cache.Open(layer.Digest);
            }
            else
            {
                blob = await source.OpenBlobAsync(layer, cancellationToken).ConfigureAwait(false);
                if (cache is not null)
                {
                    blob = tee = cache.Tee(blob, layer.Digest);
                }
            }

            WrittenImage written;

            // The registry stream already receives and hashes on a thread of its own; a kept blob (read and
            // hashed here) or a tee (written here) would otherwise share the decoder's thread.
            using (var input = fromCache || tee is not null ? new ReadAheadStream(blob, cancellationToken: cancellationToken) : blob)
            {
                sink.Verbose($"Writing {writer.Format.Name()} to '{partialPath}'.");
                writer.DeclaredDecodedBytes = layer.DeclaredImageSize;
                try
                {
                    written = await writer.WriteAsync(input, layer.Size, partialPath, sink, cancellationToken)
                        .ConfigureAwait(false);
                }
                catch (OrasStagingException ex) when (ex.Code is ErrorCode.CorruptInput or ErrorCode.UnsupportedFormat)
                {
                    // Bytes damaged on the way look like a corrupt image to the decoder. Reading on to the digest
                    // check tells the two apart: it throws DigestMismatch when the transfer is to blame.
                    sink.Verbose($"The decoder failed ({ex.Message}); reading on to the digest check to find out why.");
                    await DrainAsync(input, cancellationToken).ConfigureAwait(false);
                    throw;
                }

                // The decoder may stop at the end of the compressed data; reading on to the end of the blob is
                // what makes the source check the digest. Nothing is committed before that.
                await DrainAsync(input, cancellationToken).ConfigureAwait(false);
                tee?.Commit();
            }

            if (tee is not null)
            {
                sink.Verbose($"Kept the verified blob as {cache!.PathFor(layer.Digest)}.");
            }

            return written;
        }
        catch (OrasStagingException damaged) when (fromCache && damaged.Code == ErrorCode.DigestMismatch)
        {
            // A kept blob that rotted would fail every later run the same way; without it the next run
            // downloads and keeps a verified copy again.
            string kept = cache!.PathFor(layer.Digest);
            PartialFile.TryDelete(kept);
            throw File.Exists(kept)
                ? new OrasStagingException(ErrorCode.DigestMismatch, damaged.Message,
                    $"Delete '{kept}' and run again; the blob is then downloaded from the registry.", damaged)
                : new OrasStagingException(ErrorCode.DigestMismatch, damaged.Message + " It was removed.",
                    "Run again; the blob is downloaded from the registry and kept again.", damaged);
        }
        finally
        {
            tee?.Dispose();
        }
    }

    private static async Task DrainAsync(Stream input, CancellationToken cancellationToken)
    {
        byte[] scratch = new byte[1 << 16];
        while (await input.ReadAsync(scratch, cancellationToken).ConfigureAwait(false) > 0)
        {
        }
    }
}
