using System.Diagnostics;

namespace OrasStaging.Staging;

/// <summary>
/// Stages one image: decide whether it is already there, otherwise stream the verified blob through the decoder
/// into a partial file beside the target and commit it. The invariant: a stamp never vouches for bytes it did
/// not see. Until the commit, the previous image, stamp and receipt are untouched; any failure removes the
/// partial and leaves them as they were.
/// </summary>
internal sealed class InstallFlow
{
    private readonly IStagingSource _source;
    private readonly IStagingWriter _writer;
    private readonly IOperationSink _sink;

    public InstallFlow(IStagingSource source, IStagingWriter writer, IOperationSink sink)
    {
        _source = source;
        _writer = writer;
        _sink = sink;
    }

    /// <summary>A chunk of the free-space margin: metadata, tables, the filesystem's own rounding.</summary>
    internal const long SpaceMargin = 64L << 20;

    #region Skip decisions

    /// <summary>
    /// The decision that needs no network: a pinned blob digest equal to the stamp, or a pinned manifest digest
    /// that the receipt ties to the stamped layer digest. Null when the registry must be asked.
    /// </summary>
    public static string? CheckOffline(InstallRequest request)
    {
        if (request.Force || request.PinnedDigest is not { } pinned || !File.Exists(request.Path))
        {
            return null;
        }

        string? stamp = StampFile.Read(request.Path);
        if (stamp is null)
        {
            return null;
        }

        if (DigestEquals(stamp, pinned))
        {
            return $"The stamp matches the pinned blob digest {Units.ShortDigest(pinned)}.";
        }

        if (Receipt.Read(request.Path) is { } receipt
            && DigestEquals(receipt.ManifestDigest, pinned)
            && DigestEquals(receipt.Digest, stamp))
        {
            return $"The receipt ties the pinned manifest {Units.ShortDigest(pinned)} to the stamped layer {Units.ShortDigest(stamp)}.";
        }

        return null;
    }

    /// <summary>After resolving: skip when the stamp already holds the layer digest and the image is there.</summary>
    public static string? CheckResolved(InstallRequest request, ResolvedLayer layer)
    {
        if (request.Force || !File.Exists(request.Path))
        {
            return null;
        }

        return DigestEquals(StampFile.Read(request.Path), layer.Digest)
            ? $"The stamp matches the layer digest {Units.ShortDigest(layer.Digest)}."
            : null;
    }

    private static bool DigestEquals(string? a, string? b) =>
        a is not null && b is not null && string.Equals(a.Trim(), b.Trim(), StringComparison.OrdinalIgnoreCase);

    #endregion

    /// <summary>What -WhatIf reports: the skip it would make, or what it would pull and write.</summary>
    public async Task<string> DescribeAsync(InstallRequest request, CancellationToken cancellationToken)
    {
        if (CheckOffline(request) is { } offline)
        {
            return $"Would skip '{request.Path}': {offline}";
        }

        var layer = await _source.ResolveAsync(cancellationToken).ConfigureAwait(false);
        if (CheckResolved(request, layer) is { } resolved)
        {
            return $"Would skip '{request.Path}': {resolved}";
        }

        string from = request.KeepBlob is { } keep && new BlobCache(keep).Contains(layer.Digest)
            ? "the kept blob in " + keep
            : $"{layer.Registry}/{layer.Repository}";
        return $"Would pull {Units.ShortDigest(layer.Digest)} ({Units.Bytes(layer.Size)}, {layer.Title ?? layer.MediaType}) "
            + $"from {from} and write {_writer.FormatName} to '{request.Path}'"
            + (File.Exists(request.Path) ? ", replacing the image there." : ".");
    }

    public async Task<StagedImage> RunAsync(InstallRequest request, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        if (CheckOffline(request) is { } offline)
        {
            _sink.Verbose($"Skipping '{request.Path}' without contacting the registry: {offline}");
            return Skipped(request, offline, clock, null);
        }

        _sink.Progress(new ProgressInfo($"Resolving {request.Reference}", "Resolve", 0, null));
        var layer = await _source.ResolveAsync(cancellationToken).ConfigureAwait(false);
        _sink.Verbose($"Resolved {request.Reference} to layer {layer.Digest} ({Units.Bytes(layer.Size)}"
            + (layer.Title is null ? ")" : $", '{layer.Title}')")
            + (layer.ManifestDigest is null ? "." : $" in manifest {layer.ManifestDigest}."));
        if (CheckResolved(request, layer) is { } resolved)
        {
            _sink.Verbose($"Skipping '{request.Path}': {resolved}");
            return Skipped(request, resolved, clock, layer);
        }

        string folder = Path.GetDirectoryName(request.Path)
            ?? throw new OrasStagingException(ErrorCode.InvalidArgument, $"'{request.Path}' has no folder.");
        CreateFolder(folder);

        using var targetLock = await TargetLock.AcquireAsync(request.Path, request.LockTimeout, _sink, cancellationToken)
            .ConfigureAwait(false);

        // Whoever held the lock before us may just have staged the same layer.
        if (CheckResolved(request, layer) is { } meanwhile)
        {
            _sink.Verbose($"Skipping '{request.Path}' staged meanwhile by another process: {meanwhile}");
            return Skipped(request, meanwhile, clock, layer);
        }

        RemoveStalePartials(request.Path);

        var cache = request.KeepBlob is { } keepFolder ? new BlobCache(keepFolder) : null;
        // -Force means "do not trust what is on disk", and that includes a kept blob: it is downloaded again and
        // the kept copy replaced.
        bool fromCache = !request.Force && cache is not null && cache.Contains(layer.Digest);
        CheckFreeSpace(folder, layer, keepBlobTo: cache is not null && !fromCache ? cache : null);

        string partial = $"{request.Path}.{AtomicFile.RandomToken()}.partial";
        TeeStream? tee = null;
        try
        {
            Stream blob;
            if (fromCache)
            {
                _sink.Verbose($"Reading the kept blob {cache!.PathFor(layer.Digest)}.");
                blob = cache.Open(layer.Digest);
            }
            else
            {
                blob = await _source.OpenBlobAsync(layer, cancellationToken).ConfigureAwait(false);
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
                _sink.Verbose($"Writing {_writer.FormatName} to '{partial}'.");
                try
                {
                    written = await _writer.WriteAsync(input, layer.Size, partial, _sink, cancellationToken)
                        .ConfigureAwait(false);
                }
                catch (OrasStagingException ex) when (ex.Code is ErrorCode.CorruptInput or ErrorCode.UnsupportedFormat)
                {
                    // Bytes damaged on the way look like a corrupt image to the decoder. Reading on to the digest
                    // check tells the two apart: it throws DigestMismatch when the transfer is to blame.
                    _sink.Verbose($"The decoder failed ({ex.Message}); reading on to the digest check to find out why.");
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
                _sink.Verbose($"Kept the verified blob as {cache!.PathFor(layer.Digest)}.");
            }

            Commit(request, partial, layer, written);
            _sink.Verbose($"Staged '{request.Path}' ({written.Format}, {Units.Bytes(written.VirtualSize)} virtual, "
                + $"{Units.Bytes(written.FileSize)} on disk) from {Units.ShortDigest(layer.Digest)}.");
            return new StagedImage
            {
                Name = request.Name,
                Reference = request.Reference,
                Path = request.Path,
                Format = written.Format,
                Digest = layer.Digest,
                ManifestDigest = layer.ManifestDigest,
                Skipped = false,
                VirtualSize = written.VirtualSize,
                FileSize = new FileInfo(request.Path).Length,
                Duration = clock.Elapsed,
            };
        }
        catch (Exception ex)
        {
            AtomicFile.TryDelete(partial);
            if (fromCache && ex is OrasStagingException { Code: ErrorCode.DigestMismatch } damaged)
            {
                // A kept blob that rotted would fail every later run the same way; without it the next run
                // downloads and keeps a verified copy again.
                string kept = cache!.PathFor(layer.Digest);
                AtomicFile.TryDelete(kept);
                throw File.Exists(kept)
                    ? new OrasStagingException(ErrorCode.DigestMismatch, damaged.Message,
                        $"Delete '{kept}' and run again; the blob is then downloaded from the registry.", ex)
                    : new OrasStagingException(ErrorCode.DigestMismatch, damaged.Message + " It was removed.",
                        "Run again; the blob is downloaded from the registry and kept again.", ex);
            }

            if (ex is IOException io && IsDiskFull(io))
            {
                throw new OrasStagingException(ErrorCode.InsufficientSpace,
                    $"The volume holding '{folder}' ran out of space while staging '{request.Path}'.",
                    "Free some space or choose another destination; nothing was left behind.", ex);
            }

            throw;
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

    /// <summary>
    /// Flush, then: old stamp and receipt gone, image renamed into place, new stamp and receipt. A crash between
    /// any two steps leaves either the old image with no stamp or the new one with no stamp; both re-stage.
    /// </summary>
    internal static void Commit(InstallRequest request, string partial, ResolvedLayer layer, WrittenImage written)
    {
        using (var file = new FileStream(partial, FileMode.Open, FileAccess.ReadWrite, FileShare.None))
        {
            file.Flush(flushToDisk: true);
        }

        DeleteIfPresent(StampFile.PathFor(request.Path));
        DeleteIfPresent(Receipt.PathFor(request.Path));
        File.Move(partial, request.Path, overwrite: true);
        StampFile.Write(request.Path, layer.Digest);
        new Receipt
        {
            Reference = request.Reference,
            Registry = layer.Registry,
            Repository = layer.Repository,
            ManifestDigest = layer.ManifestDigest,
            Digest = layer.Digest,
            MediaType = layer.MediaType,
            Title = layer.Title,
            Format = written.Format,
            VirtualSize = written.VirtualSize,
            Time = DateTimeOffset.UtcNow,
            ModuleVersion = Receipt.CurrentModuleVersion,
        }.Write(request.Path);
    }

    private static void DeleteIfPresent(string path)
    {
        if (File.Exists(path))
        {
            File.Delete(path);
        }
    }

    private StagedImage Skipped(InstallRequest request, string reason, Stopwatch clock, ResolvedLayer? layer)
    {
        var receipt = Receipt.Read(request.Path);
        string? stamp = StampFile.Read(request.Path);
        bool receiptValid = receipt is not null && DigestEquals(receipt.Digest, stamp);
        return new StagedImage
        {
            Name = request.Name,
            Reference = request.Reference,
            Path = request.Path,
            Format = receiptValid ? receipt!.Format : _writer.FormatName,
            Digest = layer?.Digest ?? stamp,
            ManifestDigest = layer?.ManifestDigest ?? (receiptValid ? receipt!.ManifestDigest : null),
            Skipped = true,
            SkipReason = reason,
            VirtualSize = receiptValid ? receipt!.VirtualSize : null,
            FileSize = new FileInfo(request.Path).Length,
            Duration = clock.Elapsed,
        };
    }

    private static void CreateFolder(string folder)
    {
        try
        {
            Directory.CreateDirectory(folder);
        }
        catch (Exception ex) when (ex is UnauthorizedAccessException or IOException)
        {
            throw new OrasStagingException(ErrorCode.DestinationNotWritable,
                $"Cannot create the folder '{folder}': {ex.Message}",
                "Choose a folder you can write to, or fix its permissions.", ex);
        }
    }

    /// <summary>Leftovers of a run that was killed: only ever ours, since we hold the target's lock.</summary>
    private void RemoveStalePartials(string imagePath)
    {
        string folder = Path.GetDirectoryName(imagePath)!;
        string name = Path.GetFileName(imagePath);
        foreach (string stale in Directory.EnumerateFiles(folder, name + ".*.partial"))
        {
            string middle = Path.GetFileName(stale)[(name.Length + 1)..^".partial".Length];
            if (middle.Length == 8 && middle.All(char.IsAsciiHexDigitLower))
            {
                _sink.Verbose($"Removing '{stale}', left by a run that did not finish.");
                AtomicFile.TryDelete(stale);
            }
        }
    }

    private void CheckFreeSpace(string folder, ResolvedLayer layer, BlobCache? keepBlobTo)
    {
        // The compressed size is a floor for what the image takes (a qcow2 holds at least as many data bytes as
        // gzip left); an annotation may give the real size.
        long needed = Math.Max(layer.Size, layer.DeclaredImageSize ?? 0) + SpaceMargin;
        long? available = AvailableSpace(folder);
        if (available is { } free && free < needed)
        {
            throw new OrasStagingException(ErrorCode.InsufficientSpace,
                $"'{folder}' has {Units.Bytes(free)} free; staging {Units.Bytes(layer.Size)} of {Units.ShortDigest(layer.Digest)} needs at least {Units.Bytes(needed)}.",
                "Free some space or choose another destination.");
        }

        if (keepBlobTo is not null)
        {
            string keepFolder = Path.GetDirectoryName(keepBlobTo.PathFor(layer.Digest))!;
            CreateFolder(keepFolder);
            if (AvailableSpace(keepFolder) is { } keepFree && keepFree < layer.Size + SpaceMargin)
            {
                throw new OrasStagingException(ErrorCode.InsufficientSpace,
                    $"The -KeepBlob folder has {Units.Bytes(keepFree)} free; the blob is {Units.Bytes(layer.Size)}.",
                    "Free some space there or drop -KeepBlob.");
            }
        }
    }

    private static long? AvailableSpace(string folder)
    {
        try
        {
            return new DriveInfo(folder).AvailableFreeSpace;
        }
        catch (Exception ex) when (ex is IOException or ArgumentException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>ENOSPC on Unix (28), ERROR_DISK_FULL / ERROR_HANDLE_DISK_FULL on Windows.</summary>
    internal static bool IsDiskFull(IOException io)
    {
        int code = io.HResult & 0xFFFF;
        return code == 28 || code == 0x70 || code == 0x27;
    }
}
