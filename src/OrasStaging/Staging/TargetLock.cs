namespace OrasStaging.Staging;

/// <summary>
/// The cross-process lock <c>&lt;image&gt;.lock</c>, held while one target is staged. It is an exclusive open of
/// the file (FileShare.None: an advisory flock on Unix, a sharing lock on Windows), so a process that dies lets
/// go of it with its handles and no stale lock can block the next run.
/// </summary>
internal sealed class TargetLock : IDisposable
{
    private static readonly TimeSpan RetryInterval = TimeSpan.FromMilliseconds(150);
    private readonly FileStream _stream;
    private readonly string _path;

    private TargetLock(FileStream stream, string path)
    {
        _stream = stream;
        _path = path;
    }

    public static string PathFor(string imagePath) => imagePath + ".lock";

    /// <summary>Waits for the lock up to <paramref name="timeout"/>, then fails with LockTimeout.</summary>
    public static async Task<TargetLock> AcquireAsync(
        string imagePath, TimeSpan timeout, IOperationSink sink, CancellationToken cancellationToken)
    {
        string path = PathFor(imagePath);
        var deadline = DateTime.UtcNow + timeout;
        bool told = false;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            FileStream? stream = null;
            try
            {
                stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1,
                    OperatingSystem.IsWindows() ? FileOptions.DeleteOnClose : FileOptions.None);
            }
            catch (Exception ex) when ((ex is IOException io && IsHeld(io)) || IsPendingDelete(ex, path))
            {
                // Held by another process (or by another staging of the same target in this one).
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Anything else (a read-only mount, a quota, a full disk, no permission) will not change by waiting.
                throw IO.DiskSpace.IsDiskFull(ex)
                    ? new OrasStagingException(ErrorCode.InsufficientSpace,
                        $"Cannot create the lock file '{path}': the volume is full.", "Free some space or choose another destination.", ex)
                    : new OrasStagingException(ErrorCode.DestinationNotWritable,
                        $"Cannot create the lock file '{path}': {ex.Message}",
                        "Choose a folder you can write to (not a read-only mount, not over quota), or fix its permissions.", ex);
            }

            if (stream is not null)
            {
                if (!IsUnlinked(stream))
                {
                    return new TargetLock(stream, path);
                }

                // We locked a file its previous holder had already removed; the live lock is the new one.
                stream.Dispose();
                continue;
            }

            if (DateTime.UtcNow >= deadline)
            {
                throw new OrasStagingException(ErrorCode.LockTimeout,
                    $"Another process has been staging '{imagePath}' for longer than {timeout.TotalSeconds:0} s.",
                    "Wait for it to finish, raise -TimeoutSec, or remove the lock file if no process holds it.");
            }

            if (!told)
            {
                sink.Verbose($"Waiting for another process to finish staging '{imagePath}'.");
                told = true;
            }

            await Task.Delay(RetryInterval, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// A real lock or sharing violation, the only failure worth waiting on: EWOULDBLOCK from flock on Unix (11 on
    /// Linux, 35 on macOS and the BSDs), ERROR_SHARING_VIOLATION or ERROR_LOCK_VIOLATION (32, 33) on Windows.
    /// </summary>
    internal static bool IsHeld(IOException ex)
    {
        if (ex is FileNotFoundException or DirectoryNotFoundException or PathTooLongException)
        {
            return false;
        }

        if (OperatingSystem.IsWindows())
        {
            return (ex.HResult & 0xFFFF) is 32 or 33;
        }

        return ex.HResult == (OperatingSystem.IsLinux() ? 11 : 35);
    }

    /// <summary>
    /// Windows: a holder closing its DeleteOnClose handle leaves the file "delete pending" for a moment, and opening
    /// it then is access denied; a lock file that exists is one we may wait for.
    /// </summary>
    private static bool IsPendingDelete(Exception ex, string path) =>
        OperatingSystem.IsWindows() && ex is UnauthorizedAccessException && File.Exists(path);

    /// <summary>
    /// Linux only: whether our handle is on a lock file already unlinked by the holder we waited for, which a
    /// third process may since have re-created. Elsewhere the file is never removed while others can wait on it.
    /// </summary>
    private static bool IsUnlinked(FileStream stream)
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        try
        {
            var fd = stream.SafeFileHandle.DangerousGetHandle().ToInt64();
            var target = new FileInfo($"/proc/self/fd/{fd}").LinkTarget;
            return target is not null && target.EndsWith(" (deleted)", StringComparison.Ordinal);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        // Unlinking while still holding it keeps the folder clean; a waiter that opened the old inode notices
        // (IsUnlinked) and retries. On Windows DeleteOnClose does the same; on macOS the empty file stays.
        if (OperatingSystem.IsLinux())
        {
            IO.PartialFile.TryDelete(_path);
        }

        _stream.Dispose();
    }
}
