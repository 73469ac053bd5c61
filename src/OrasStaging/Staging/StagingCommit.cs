using OrasStaging.Devices;
using OrasStaging.IO;

namespace OrasStaging.Staging;

/// <summary>
/// The end of a staging run: the written partial becomes the image, with its stamp and receipt, and leftovers of
/// runs that were killed are removed. Only ever called while holding the target's lock.
/// </summary>
internal static class StagingCommit
{
    /// <summary>
    /// Flush, then: old stamp and receipt gone, image renamed into place, new stamp and receipt. A crash between
    /// any two steps leaves either the old image with no stamp or the new one with no stamp; both re-stage.
    /// </summary>
    public static void Commit(InstallRequest request, PartialFile partial, ResolvedLayer layer, WrittenImage written)
    {
        // A device node, FIFO, socket or folder at the path is never renamed over: renaming over /dev/loop0 would
        // replace the node with a file and leave the disk unwritten. Checked again here, just before the rename.
        TargetKind.ThrowUnlessFileTarget(request.Path, "the image path");
        using (var file = new FileStream(partial.PartialPath, FileMode.Open, FileAccess.ReadWrite, FileShare.None))
        {
            file.Flush(flushToDisk: true);
        }

        DeleteIfPresent(StampFile.PathFor(request.Path));
        DeleteIfPresent(Receipt.PathFor(request.Path));
        partial.Commit();
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
            Convention = layer.Convention,
            MemberPath = layer.MemberPath,
            Format = written.Format,
            VirtualSize = written.VirtualSize,
            Time = DateTimeOffset.UtcNow,
            ModuleVersion = Receipt.CurrentModuleVersion,
            BlobSource = layer.BlobSource,
        }.Write(request.Path);
    }

    /// <summary>
    /// Leftovers of a run that was killed: only ever ours, since the caller holds the target's lock. <paramref name="except"/>:
    /// the one this run reuses.
    /// </summary>
    public static void RemoveStalePartials(string imagePath, IOperationSink sink, string? except = null)
    {
        string folder = Path.GetDirectoryName(imagePath)!;
        foreach (string stale in Directory.EnumerateFiles(folder, Path.GetFileName(imagePath) + ".*" + PartialFile.Suffix))
        {
            if (PartialFile.IsRandomPartialOf(imagePath, stale) && !string.Equals(Path.GetFullPath(stale), except is null ? null : Path.GetFullPath(except), StringComparison.Ordinal))
            {
                sink.Verbose($"Removing '{stale}', left by a run that did not finish.");
                PartialFile.TryDelete(stale);
            }
        }
    }

    private static void DeleteIfPresent(string path)
    {
        if (File.Exists(path))
        {
            File.Delete(path);
        }
    }
}
