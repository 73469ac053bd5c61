using OrasStaging.Devices;
using OrasStaging.IO;

namespace OrasStaging.DiskImages;

/// <summary>Writes through a temporary file beside the destination, renamed into place only when complete.</summary>
public static class DestinationFile
{
    /// <summary>
    /// Fails with DestinationExists unless <paramref name="force"/>; runs <paramref name="write"/> against a new
    /// temporary path in the destination's folder; renames it over the destination on success and deletes it on
    /// any failure or cancellation, so nothing half-written is ever left behind.
    /// </summary>
    public static async Task<DiskWriteResult> WriteAsync(
        string destination, bool force, Func<string, Task<DiskWriteResult>> write)
    {
        CheckDestination(destination, force);
        using var partial = PartialFile.HiddenBeside(destination, "partial");
        var result = await write(partial.PartialPath).ConfigureAwait(false);
        CheckDestination(destination, force);
        partial.Commit(overwrite: force);
        return result;
    }

    public static void CheckDestination(string destination, bool force)
    {
        FileRules.ThrowIfFolder(destination, "the destination", "Give a file name as the destination.");
        // Checked before the temporary file is created and again before the rename: a device, FIFO or socket at the
        // destination is never renamed over, deleted or truncated.
        TargetKind.ThrowUnlessFileTarget(destination, "the destination");

        if (!force && File.Exists(destination))
        {
            throw new OrasStagingException(ErrorCode.DestinationExists,
                $"The destination '{destination}' already exists.", "Use -Force to overwrite it, or choose another destination.");
        }
    }
}
