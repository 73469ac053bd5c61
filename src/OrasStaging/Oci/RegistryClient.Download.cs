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
                RangeLedger.Delete(partial.PartialPath);
            }
        }

        partial.Commit();
        RangeLedger.Delete(partial.PartialPath);
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

    /// <summary>
    /// Completes the partial. With several connections the ranges go at their offsets and the
    /// <see cref="RangeLedger"/> beside it says which are there; with one, it grows from where the kept part ends.
    /// A kept part that does not verify gets one clean retry.
    /// </summary>
    private async Task FillAsync(FileStream file, OrasImage image, string name, CancellationToken ct)
    {
        for (int pass = 0; ; pass++)
        {
            var (ledger, kept) = await PrepareResumeAsync(file, image, name, ct).ConfigureAwait(false);
            bool ranged = RangedFetch.Applies(_transport.Options, image.Size);
            long start = ranged ? 0 : kept;
            IncrementalHash? prefix = null;
            if (ranged && ledger.Count > 0)
            {
                _sink.Verbose($"Resuming {name}: {ledger.Count} of {(image.Size + RangedFetch.ChunkSize - 1) / RangedFetch.ChunkSize} ranges are kept (re-hashing them).");
            }
            else if (start > 0)
            {
                _sink.Verbose($"Resuming {name} at {Units.Bytes(start)} of {Units.Bytes(image.Size)} (re-hashing the kept part).");
                prefix = await HashPrefixAsync(file, start, image, ct).ConfigureAwait(false);
            }

            bool reused = start > 0 || ledger.Count > 0;
            var writer = new OverlappedFileWriter(file, ct, start, ledger.MarkThrough);
            try
            {
                // Bytes a range already put at their offset are only hashed on the way; the rest is written in order.
                await FetchAsync(image, start, prefix,
                    (buffer, count, token) => ledger.IsStored(writer.Position, count) ? writer.Skip(buffer, count) : writer.WriteAsync(buffer, count, token),
                    rewind: async _ =>
                    {
                        await writer.RewindAsync().ConfigureAwait(false);
                        ledger.Clear();
                    },
                    null, ct, beforeVerify: writer.DrainAsync, store: ranged ? new PartialRangeStore(file, ledger) : null).ConfigureAwait(false);
                break;
            }
            catch (OrasStagingException ex) when (ex.Code == ErrorCode.DigestMismatch && reused && pass == 0)
            {
                // The kept part may be what was wrong (a different blob, a torn write); one clean retry.
                _sink.Verbose($"The kept part of {name}.partial did not verify; downloading it again from the start.");
                await writer.DisposeAsync().ConfigureAwait(false);
                file.SetLength(0);
                ledger.Clear();
            }
            finally
            {
                await writer.DisposeAsync().ConfigureAwait(false);
                // What was written in order is on record for the next run (a stall or a cut mid-MiB included).
                ledger.Save();
            }
        }

        await file.FlushAsync(ct).ConfigureAwait(false);
        file.Flush(flushToDisk: true);
    }

    /// <summary>
    /// What of the partial can be trusted, decided before anything is fetched: the ranges its record lists when the
    /// record names this blob; nothing when it names another (a leftover of a different blob under the same name);
    /// without a record (an older version, a copy), the kept length, if its last bytes match the server's.
    /// The record is saved before the first byte is written, so the next run knows whose bytes these are.
    /// </summary>
    private async Task<(RangeLedger Ledger, long Kept)> PrepareResumeAsync(FileStream file, OrasImage image, string name, CancellationToken ct)
    {
        long length = file.Length;
        var record = RangeLedger.TryRead(file.Name);
        var ledger = RangeLedger.Create(file.Name, image);
        long kept = 0;
        if (length > image.Size)
        {
            _sink.Verbose($"{name}.partial is longer than the blob; starting over.");
        }
        else if (record is not null && record.IsFor(image))
        {
            record.DropBeyond(length);
            ledger = record;
            kept = ledger.ContiguousBytes;
        }
        else if (record is not null)
        {
            if (length > 0)
            {
                _sink.Verbose($"{name}.partial holds bytes of {record.Digest}, not {image.Digest}; starting over.");
            }
        }
        else if (length > 0)
        {
            if (await TailMatchesAsync(file, length, image, ct).ConfigureAwait(false))
            {
                kept = length;
                ledger.MarkThrough(length);
            }
            else
            {
                _sink.Verbose($"{name}.partial does not match the start of {image.Digest} (another blob?); starting over.");
            }
        }

        if (kept == 0 && ledger.Count == 0)
        {
            file.SetLength(0);
        }

        ledger.Save();
        return (ledger, kept);
    }

    /// <summary>
    /// A partial without a record: its last bytes (up to 1 KiB) against the server's at the same offset, one small
    /// ranged GET. A server that will not say (no 206) leaves the kept part to the digest check at the end.
    /// </summary>
    private async Task<bool> TailMatchesAsync(FileStream file, long length, OrasImage image, CancellationToken ct)
    {
        int sample = (int)Math.Min(length, 1024);
        long from = length - sample;
        var request = new RegistryRequest(HttpMethod.Get, BlobUriOf(image.Registry, image.Repository, image.Digest), image.Registry, image.Repository,
            $"blob {Units.ShortDigest(image.Digest)} bytes {from}-{length - 1}")
        { RangeFrom = from, RangeTo = length - 1 };
        using var response = await _transport.SendAsync(request, ct).ConfigureAwait(false);
        if (response.StatusCode != System.Net.HttpStatusCode.PartialContent
            || response.Content.Headers.ContentRange is not { } range || range.From != from || range.To != length - 1)
        {
            return true;
        }

        byte[] theirs = await response.Content.ReadAsByteArrayAsync(ct).ConfigureAwait(false);
        byte[] ours = new byte[sample];
        await RandomAccess.ReadAsync(file.SafeFileHandle, ours, from, ct).ConfigureAwait(false);
        return theirs.AsSpan().SequenceEqual(ours);
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
