using System.Runtime.InteropServices;

namespace OrasStaging.Compression;

/// <summary>
/// Decodes whole zstd frames held in memory into a fixed output through libzstd, with one decoding context reused
/// for every call (a compressed qcow2 cluster is one or more frames): no stream object or context per cluster.
/// Not thread-safe: one per worker.
/// </summary>
internal sealed class LibZstdFrameDecoder : IDisposable
{
    private readonly LibZstd _api;
    private readonly LibZstd.InitFn _init;
    private IntPtr _context;

    public LibZstdFrameDecoder(LibZstd api)
    {
        _api = api;
        _init = api.Init ?? throw new InvalidOperationException($"{api.Library} lacks ZSTD_initDStream.");
        _context = api.Create();
        if (_context == IntPtr.Zero)
        {
            throw new OutOfMemoryException("ZSTD_createDStream failed.");
        }
    }

    /// <summary>
    /// Decodes exactly one frame, source[0..length), into output[offset..offset+count); the bytes produced.
    /// A frame that is cut short, or that has more to give when the output is full, is invalid data.
    /// </summary>
    /// <exception cref="InvalidDataException">The frame is corrupt, truncated or larger than the output.</exception>
    public int DecodeFrame(byte[] source, int sourceOffset, int length, byte[] output, int offset, int count)
    {
        ObjectDisposedException.ThrowIf(_context == IntPtr.Zero, this);
        ArgumentOutOfRangeException.ThrowIfGreaterThan((long)(uint)sourceOffset + (uint)length, source.Length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan((long)(uint)offset + (uint)count, output.Length);
        var inHandle = GCHandle.Alloc(source, GCHandleType.Pinned);
        var outHandle = GCHandle.Alloc(output, GCHandleType.Pinned);
        try
        {
            // A previous call may have stopped inside a frame (an error): start clean.
            Check(_init(_context));
            var input = new LibZstd.Buffer { Data = inHandle.AddrOfPinnedObject() + sourceOffset, Size = (nuint)length, Pos = 0 };
            var outBuf = new LibZstd.Buffer { Data = outHandle.AddrOfPinnedObject() + offset, Size = (nuint)count, Pos = 0 };
            while (true)
            {
                nuint before = input.Pos + outBuf.Pos;
                nuint result = Check(_api.Decompress(_context, ref outBuf, ref input));
                if (result == 0)
                {
                    return (int)outBuf.Pos;
                }

                if (outBuf.Pos == outBuf.Size)
                {
                    throw new InvalidDataException("a zstd frame holds more than the space it decodes into");
                }

                if (input.Pos == input.Size && input.Pos + outBuf.Pos == before)
                {
                    throw new InvalidDataException("a zstd frame is cut short");
                }
            }
        }
        finally
        {
            inHandle.Free();
            outHandle.Free();
        }
    }

    private nuint Check(nuint code) =>
        _api.IsError(code) != 0 ? throw new InvalidDataException($"{_api.Describe(code)} (libzstd)") : code;

    public void Dispose()
    {
        if (_context != IntPtr.Zero)
        {
            _api.Free(_context);
            _context = IntPtr.Zero;
        }

        GC.SuppressFinalize(this);
    }

    ~LibZstdFrameDecoder() => Dispose();
}
