using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace OrasStaging.DiskImages;

/// <summary>
/// Starts the kernel's write-out of an image file as it is written (Linux sync_file_range, SYNC_FILE_RANGE_WRITE:
/// initiate, do not wait), so the one fsync at the end finds little left to do. Without it the dirty pages of a
/// short conversion sit in the page cache until that fsync, which then waits for all of them with the CPU idle:
/// 0.42 s of a 1.2 s qcow2 to raw of 512 MiB, measured. Durability is unchanged (the final fsync stays); this only
/// overlaps the disk's work with decoding. Elsewhere, or where the call fails, it does nothing.
/// </summary>
internal sealed class EarlyWriteback
{
    /// <summary>
    /// Large enough that the calls cost nothing, small enough that the disk never idles: on a 252 MB/s virtual disk a
    /// local gzip to qcow2 of the 2 GiB bench image took 3.5 s (median) with 8 MiB steps against 3.85 s with 32 MiB;
    /// 2 MiB was no better.
    /// </summary>
    private const long Step = 8L << 20;

    private const uint SyncFileRangeWrite = 2;

    private readonly SafeFileHandle _handle;
    private bool _enabled = OperatingSystem.IsLinux();
    private long _started;

    public EarlyWriteback(SafeFileHandle handle) => _handle = handle;

    /// <summary>Everything before <paramref name="position"/> has been handed to the file.</summary>
    public void Written(long position)
    {
        if (!_enabled || position - _started < Step)
        {
            return;
        }

        bool added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            if (SyncFileRange((int)_handle.DangerousGetHandle(), _started, position - _started, SyncFileRangeWrite) != 0)
            {
                _enabled = false; // ENOSYS, or a file system that refuses it: the final fsync does it all, as before.
            }
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            _enabled = false;
        }
        finally
        {
            if (added)
            {
                _handle.DangerousRelease();
            }
        }

        _started = position;
    }

    [DllImport("libc", EntryPoint = "sync_file_range", SetLastError = true)]
    private static extern int SyncFileRange(int fd, long offset, long nbytes, uint flags);
}
