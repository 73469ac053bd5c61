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
    /// <summary>
    /// The unit of zero detection: the file system's block, so a zero block inside a data cluster stays a hole, as
    /// qemu-img leaves it. Measured on the 2 GiB bench image: 586 MiB allocated against 652 MiB with 64 KiB units
    /// (qemu-img convert: 585 MiB), with no measurable change in time.
    /// </summary>
    private const int Cs = 4 * 1024;

    private readonly ImageFile _file;
    private readonly bool _vhdFooter;
    private readonly EarlyWriteback _writeback;
    private long _position;

    public RawWriter(ImageFile file, bool vhdFooter)
    {
        _file = file;
        _vhdFooter = vhdFooter;
        SparseFile.MarkSparse(file.Handle);
        _writeback = new EarlyWriteback(file.Handle);
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
                _file.Write(buffer.AsSpan(runStart, off - runStart), _position + runStart);
                runStart = -1;
            }
        }

        if (runStart >= 0)
        {
            _file.Write(buffer.AsSpan(runStart, count - runStart), _position + runStart);
        }

        _position += count;
        _writeback.Written(_position);
    }

    public (long VirtualSize, long FileSize) Finish(long decodedLength, long virtualSize)
    {
        long fileSize = virtualSize;
        _file.EndAt(virtualSize);
        if (_vhdFooter)
        {
            _file.Write(VhdFooter.Build(virtualSize, Guid.NewGuid(), DateTimeOffset.UtcNow), virtualSize);
            fileSize += VhdFooter.Length;
        }

        _file.Flush();
        return (virtualSize, fileSize);
    }

    public ImageFile File => _file;

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
