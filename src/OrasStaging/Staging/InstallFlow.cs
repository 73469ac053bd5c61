using System.Diagnostics;
using OrasStaging.DiskImages;
using OrasStaging.IO;

namespace OrasStaging.Staging;

/// <summary>
/// Stages one image: decide whether it is already there (<see cref="SkipDecision"/>), otherwise stream the
/// verified blob through the decoder into a partial file beside the target (<see cref="OnePassWrite"/>) and
/// commit it (<see cref="StagingCommit"/>). Until the commit, the previous image, stamp and receipt are
/// untouched; any failure removes the partial and leaves them as they were.
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

    /// <summary>What -WhatIf reports: the skip it would make, or what it would pull and write.</summary>
    public async Task<string> DescribeAsync(InstallRequest request, CancellationToken cancellationToken)
    {
        CheckTarget(request);
        if (SkipDecision.CheckOffline(request) is { } offline)
        {
            return $"Would skip '{request.Path}': {offline}";
        }

        var layer = await _source.ResolveAsync(cancellationToken).ConfigureAwait(false);
        if (SkipDecision.CheckResolved(request, layer) is { } resolved)
        {
            return $"Would skip '{request.Path}': {resolved}";
        }

        string from = request.KeepBlob is { } keep && new BlobCache(keep).Contains(layer.Digest)
            ? "the kept blob in " + keep
            : $"{layer.Registry}/{layer.Repository}";
        return $"Would pull {Units.ShortDigest(layer.Digest)} ({Units.Bytes(layer.Size)}, {layer.Title ?? layer.MediaType}) "
            + $"from {from} and write {_writer.Format.Name()} to '{request.Path}'"
            + (File.Exists(request.Path) ? ", replacing the image there." : ".");
    }

    public async Task<StagedImage> RunAsync(InstallRequest request, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        CheckTarget(request);
        if (SkipDecision.CheckOffline(request) is { } offline)
        {
            _sink.Verbose($"Skipping '{request.Path}' without contacting the registry: {offline}");
            return SkipDecision.Skipped(request, offline, clock, null, _writer.Format);
        }

        _sink.Progress(new ProgressInfo($"Resolving {request.Reference}", "Resolve", 0, null));
        var layer = await _source.ResolveAsync(cancellationToken).ConfigureAwait(false);
        _sink.Verbose($"Resolved {request.Reference} to layer {layer.Digest} ({Units.Bytes(layer.Size)}"
            + (layer.Title is null ? ")" : $", '{layer.Title}')")
            + (layer.ManifestDigest is null ? "." : $" in manifest {layer.ManifestDigest}."));
        if (SkipDecision.CheckResolved(request, layer) is { } resolved)
        {
            _sink.Verbose($"Skipping '{request.Path}': {resolved}");
            return SkipDecision.Skipped(request, resolved, clock, layer, _writer.Format);
        }

        if (_writer is DiskImageStagingWriter disk)
        {
            // In a containerDisk, the member of the layer's tar that holds the disk (the size bound is set in OnePassWrite).
            disk.TarMember = layer.MemberPath;
        }

        string folder = Path.GetDirectoryName(request.Path)
            ?? throw new OrasStagingException(ErrorCode.InvalidArgument, $"'{request.Path}' has no folder.");
        CreateFolder(folder);

        using var targetLock = await TargetLock.AcquireAsync(request.Path, request.LockTimeout, _sink, cancellationToken)
            .ConfigureAwait(false);

        // Whoever held the lock before us may just have staged the same layer.
        if (SkipDecision.CheckResolved(request, layer) is { } meanwhile)
        {
            _sink.Verbose($"Skipping '{request.Path}' staged meanwhile by another process: {meanwhile}");
            return SkipDecision.Skipped(request, meanwhile, clock, layer, _writer.Format);
        }

        var cache = request.KeepBlob is { } keepFolder ? new BlobCache(keepFolder) : null;
        // -Force means "do not trust what is on disk", and that includes a kept blob: it is downloaded again and
        // the kept copy replaced.
        bool fromCache = !request.Force && cache is not null && cache.Contains(layer.Digest);
        // Stale prefixes go first: their space is free for this run, and what is left is reused and not needed again.
        ResumePrefix.Sweep(request.Path, cache, layer, request.Force, _sink);
        var prefix = fromCache ? null : ResumePrefix.For(request.Path, cache, layer);
        // A resumed download re-decodes the kept part; the image a killed run wrote from it is reused, so the disk
        // does not write it again. Every other partial of the target is a leftover.
        string? reused = prefix?.KilledRunImage(request.Path, layer);
        StagingCommit.RemoveStalePartials(request.Path, _sink, except: reused);
        CheckFreeSpace(request.Path, folder, layer, cache, fromCache, reused);

        using var partial = reused is not null ? new PartialFile(request.Path, reused) : PartialFile.RandomBeside(request.Path);
        try
        {
            if (reused is not null)
            {
                _sink.Verbose($"Reusing '{reused}', the image an unfinished run left: only what differs from it is written.");
            }

            _writer.ReuseOutput = reused is not null;
            // From the network, the bytes received are kept (ResumePrefix) so a killed run resumes; with -KeepBlob
            // that prefix becomes the kept blob, so OnePassWrite's own tee is not needed.
            IStagingSource source = _source;
            if (prefix is not null)
            {
                prefix.ImagePartial = Path.GetFileName(partial.PartialPath);
                source = new ResumingSource(_source, prefix, _sink);
            }

            var written = await new OnePassWrite(source, _writer, _sink)
                .WriteAsync(layer, fromCache ? cache : null, fromCache, partial.PartialPath, cancellationToken).ConfigureAwait(false);
            StagingCommit.Commit(request, partial, layer with
            {
                BlobSource = fromCache ? $"kept blob {cache!.PathFor(layer.Digest)}" : _source.BlobSources is { Count: > 0 } from ? string.Join(", then ", from) : null,
            }, written);
            _sink.Verbose($"Staged '{request.Path}' ({written.Format.Name()}, {Units.Bytes(written.VirtualSize)} virtual, "
                + $"{Units.Bytes(written.FileSize)} on disk) from {Units.ShortDigest(layer.Digest)}.");
            return StagedImage.Staged(request, layer, written.Format, written.VirtualSize, new FileInfo(request.Path).Length, clock.Elapsed);
        }
        catch (Exception ex) when (DiskSpace.IsDiskFull(ex))
        {
            throw new OrasStagingException(ErrorCode.InsufficientSpace,
                $"The volume holding '{folder}' ran out of space while staging '{request.Path}'.",
                "Free some space or choose another destination; nothing was left behind.", ex);
        }
        catch
        {
            // Read here, not in a filter: by now the download's stream is disposed and its record final. When it stays
            // (not Ctrl+C, not a digest mismatch) the next run resumes, so the image written so far stays with it, for
            // that run to write into rather than anew.
            if (!cancellationToken.IsCancellationRequested && prefix?.ReadRecord() is { Offset: > 0, Image: { } named }
                && named == Path.GetFileName(partial.PartialPath))
            {
                partial.Keep();
                _sink.Verbose($"Kept '{partial.PartialPath}' with the kept download, for the next run to write into.");
            }

            throw;
        }
    }

    /// <summary>The image path names a file; a folder there is the caller's mistake, told before the registry is asked.</summary>
    private static void CheckTarget(InstallRequest request)
    {
        FileRules.ThrowIfFolder(request.Path, "the image path", "Give -Path the image file itself, e.g. <folder>/disk.qcow2.");
        // Before any lock, partial, stamp or receipt is created beside it (devices are routed to DeviceFlow earlier).
        Devices.TargetKind.ThrowUnlessFileTarget(request.Path, "the image path");
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

    /// <summary>
    /// Bytes the run still needs: in the image's folder, the image (the compressed size is a floor for it, since a
    /// qcow2 holds at least as many data bytes as gzip left; an annotation may give the real size) plus, for a
    /// download, the part of the blob its resume prefix beside the image does not hold yet; with -KeepBlob, the
    /// prefix is in the kept-blob folder instead, which needs the blob less what it already holds there.
    /// </summary>
    internal static (long Folder, long KeepFolder) SpaceNeeded(ResolvedLayer layer, bool download, bool keepBlob, long held)
    {
        long image = Math.Max(layer.Size, layer.DeclaredImageSize ?? 0) + SpaceMargin;
        long rest = download ? Math.Max(0, layer.Size - held) : 0;
        return keepBlob ? (image, download ? rest + SpaceMargin : 0) : (image + rest, 0);
    }

    private static void CheckFreeSpace(string imagePath, string folder, ResolvedLayer layer, BlobCache? cache, bool fromCache, string? reusedImage)
    {
        long held = fromCache ? 0 : ResumePrefix.For(imagePath, cache, layer).ReusableBytes(layer);
        var (needed, keepNeeded) = SpaceNeeded(layer, download: !fromCache, keepBlob: cache is not null, held);
        // A reused partial already holds its blocks; a new file would need them again.
        needed = Math.Max(0, needed - (reusedImage is null ? 0 : DiskSpace.AllocatedBytes(reusedImage)));
        DiskSpace.Require(folder, needed, $"staging {Units.Bytes(layer.Size)} of {Units.ShortDigest(layer.Digest)}"
            + (held > 0 ? $" ({Units.Bytes(held)} of it already kept)" : ""),
            "Free some space or choose another destination.");

        if (cache is not null && !fromCache)
        {
            string keepFolder = Path.GetDirectoryName(cache.PathFor(layer.Digest))!;
            CreateFolder(keepFolder);
            DiskSpace.Require(keepFolder, keepNeeded, $"keeping the {Units.Bytes(layer.Size)} blob (-KeepBlob)",
                "Free some space there or drop -KeepBlob.");
        }
    }
}
