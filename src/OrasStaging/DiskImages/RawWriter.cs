using System.ComponentModel;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace OrasStaging.DiskImages;

/// <summary>
/// Sparse raw, optionally with a fixed-VHD footer: non-zero runs are written in place, zero clusters are
/// seeked over and become holes (on NTFS only once the file is marked sparse).
/// </summary>
internal sealed class RawWriter : IImageTarget
{
    private const int Cs = 64 * 1024;

    private readonly FileStream _file;
    private readonly SafeFileHandle _handle;
    private readonly bool _vhdFooter;
    private readonly WriteBehind _writeBehind;
    private long _position;

    public RawWriter(FileStream file, bool vhdFooter)
    {
        _file = file;
        _handle = file.SafeFileHandle;
        _vhdFooter = vhdFooter;
        _writeBehind = new WriteBehind(_handle);
        SparseFile.MarkSparse(_handle);
    }

    public void Append(byte[] buffer, int count)
    {
        int runStart = -1;
        for (int off = 0; off < count; off += Cs)
        {
            int len = Math.Min(Cs, count - off);
            bool zero = buffer.AsSpan(off, len).IndexOfAnyExcept((byte)0) < 0;
            if (!zero && runStart < 0)
            {
                runStart = off;
            }
            else if (zero && runStart >= 0)
            {
                RandomAccess.Write(_handle, buffer.AsSpan(runStart, off - runStart), _position + runStart);
                runStart = -1;
            }
        }

        if (runStart >= 0)
        {
            RandomAccess.Write(_handle, buffer.AsSpan(runStart, count - runStart), _position + runStart);
        }

        _position += count;
        _writeBehind.Written(_position);
    }

    public (long VirtualSize, long FileSize) Finish(long decodedLength, long virtualSize)
    {
        long fileSize = virtualSize;
        if (_vhdFooter)
        {
            RandomAccess.SetLength(_handle, virtualSize);
            RandomAccess.Write(_handle, VhdFooter.Build(virtualSize, Guid.NewGuid(), DateTimeOffset.UtcNow), virtualSize);
            fileSize += VhdFooter.Length;
        }
        else
        {
            RandomAccess.SetLength(_handle, virtualSize);
        }

        _file.Flush(flushToDisk: true);
        return (virtualSize, fileSize);
    }

    public void Dispose() => _file.Dispose();
}

internal static class SparseFile
{
    private const uint FsctlSetSparse = 0x000900C4;

    /// <summary>Without this, NTFS fills every skipped range with real zeros. Other file systems make holes on their own.</summary>
    public static void MarkSparse(SafeFileHandle handle)
    {
        if (!OperatingSystem.IsWindows())
        {
            return;
        }

        if (!DeviceIoControl(handle, FsctlSetSparse, IntPtr.Zero, 0, IntPtr.Zero, 0, out _, IntPtr.Zero))
        {
            // FAT and exFAT cannot do sparse files; the image is still right, only larger on disk.
            _ = new Win32Exception(Marshal.GetLastWin32Error());
        }
    }

    [DllImport("kernel32.dll", SetLastError = true)]
    [return: MarshalAs(UnmanagedType.Bool)]
    private static extern bool DeviceIoControl(
        SafeFileHandle device, uint ioControlCode, IntPtr inBuffer, int inBufferSize,
        IntPtr outBuffer, int outBufferSize, out int bytesReturned, IntPtr overlapped);
}

/// <summary>
/// Starts the kernel's writeback of what a writer has appended so far, every few MiB, without waiting for it
/// (Linux sync_file_range, SYNC_FILE_RANGE_WRITE). The flush at the end of the image then waits only for the last
/// few MiB instead of writing the whole image out while nothing else runs (measured: 0.4 s of 1.2 s for 260 MiB of
/// data). Advisory: elsewhere, or where the file system refuses, it does nothing and the final flush does it all.
/// </summary>
internal sealed class WriteBehind(SafeFileHandle handle)
{
    private const long Step = 8L << 20;
    private const uint SyncFileRangeWrite = 2;

    private readonly bool _enabled = OperatingSystem.IsLinux();
    private long _kicked;
    private bool _failed;

    /// <summary>Everything below <paramref name="end"/> has been written; starts writeback once a step has gathered.</summary>
    public void Written(long end)
    {
        if (!_enabled || _failed || end - _kicked < Step)
        {
            return;
        }

        try
        {
            if (sync_file_range((int)handle.DangerousGetHandle(), _kicked, end - _kicked, SyncFileRangeWrite) != 0)
            {
                _failed = true;
            }
        }
        catch (Exception ex) when (ex is EntryPointNotFoundException or DllNotFoundException)
        {
            _failed = true;
        }

        _kicked = end;
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int sync_file_range(int fd, long offset, long nbytes, uint flags);
}
