using System.Buffers;
using System.Security.Cryptography;
using OrasStaging.IO;

namespace OrasStaging.Oci;

public sealed partial class RegistryClient
{
    /// <summary>
    /// Save-OrasBlob: the blob to <paramref name="destinationFile"/> through <c>&lt;name&gt;.partial</c>, which is
    /// kept when a run fails (the next run resumes from it, re-hashing the kept part) and deleted only when the
    /// bytes did not verify. A destination that already holds the digest is left alone.
    /// </summary>
    public async Task<FileInfo> DownloadBlobAsync(OrasImage image, string destinationFile, bool force, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(image);
        string destination = Path.GetFullPath(destinationFile);
        string name = Path.GetFileName(destination);
        if (File.Exists(destination))
        {
            var existing = new FileInfo(destination);
            if (existing.Length == image.Size
                && Digest.AreEqual(await Digest.ComputeFileAsync(destination, image.Digest, ct).ConfigureAwait(false), image.Digest))
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

        // Not RandomBeside: the fixed name is what lets the next run find and resume the kept part.
        var partial = new PartialFile(destination, destination + PartialFile.Suffix);
        FileStream file = OpenPartial(partial.PartialPath);
        bool keep = true;
        try
        {
            await FillAsync(file, image, name, ct).ConfigureAwait(false);
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
                partial.Dispose();
            }
        }

        partial.Commit();
        _sink.Verbose($"Saved {destination} ({Units.Bytes(image.Size)}, {image.Digest}).");
        return new FileInfo(destination);
    }

    private static FileStream OpenPartial(string partial)
    {
        string folder = Path.GetDirectoryName(partial)!;
        try
        {
            Directory.CreateDirectory(folder);
            return new FileStream(partial, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.Asynchronous);
        }
        catch (IOException ex) when (File.Exists(partial) && !DiskSpace.IsDiskFull(ex))
        {
            // A sharing violation: FileShare.None on both sides, so another process holds the partial open.
            throw new OrasStagingException(ErrorCode.DestinationNotWritable,
                $"'{partial}' is open in another process, probably another download of the same blob, which is writing it.",
                "Wait for the other download to finish, or save to another destination.", ex);
        }
        catch (Exception ex) when (ex is UnauthorizedAccessException || (ex is IOException io && !DiskSpace.IsDiskFull(io)))
        {
            // A parent that is a file, a read-only folder, a missing drive: one stable id for "cannot write there".
            throw new OrasStagingException(ErrorCode.DestinationNotWritable,
                $"Cannot write '{partial}': {ex.Message}",
                $"Choose a destination folder you can write to; every part of '{folder}' must be a folder, not a file.", ex);
        }
    }

    /// <summary>Completes the partial from where it ends; a kept part that does not verify gets one clean retry.</summary>
    private async Task FillAsync(FileStream file, OrasImage image, string name, CancellationToken ct)
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

    private async Task<IncrementalHash> HashPrefixAsync(FileStream file, long length, OrasImage image, CancellationToken ct)
    {
        var hash = Digest.CreateHash(image.Digest);
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
}
