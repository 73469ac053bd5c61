using System.Runtime.InteropServices;

namespace OrasStaging.Compression;

/// <summary>
/// zstd through the system's libzstd. ZSTD_decompressStream walks concatenated frames and skips skippable ones by
/// itself; it returns 0 exactly when a frame is complete and flushed, so input that ends while the last return was
/// not 0 (and the output did not simply fill up) is a truncated frame. Buffers live on the pinned heap; the
/// decompression context is native and freed on dispose.
/// </summary>
internal sealed class LibZstdStream : NativeDecoderStream
{
    private readonly Stream _compressed;
    private readonly LibZstd _api;
    private IntPtr _context;
    private int _inPos, _inLen;
    private bool _eof, _done, _outputFilled;
    private nuint _lastResult = 1; // "a frame is in progress" until the decoder says one is complete

    public LibZstdStream(Stream compressed, LibZstd api)
    {
        _compressed = compressed;
        _api = api;
        _context = api.Create();
        if (_context == IntPtr.Zero)
        {
            throw new OutOfMemoryException("ZSTD_createDStream failed.");
        }
    }

    protected override int Decode()
    {
        ObjectDisposedException.ThrowIf(_context == IntPtr.Zero, this);
        while (!_done)
        {
            if (_inPos == _inLen && !_eof)
            {
                _inPos = 0;
                _inLen = _compressed.Read(In, 0, BufferSize);
                _eof = _inLen == 0;
            }

            if (_inPos == _inLen && _eof)
            {
                // 0 means the last frame is complete and flushed; otherwise only a full output excuses the rest.
                if (_lastResult == 0)
                {
                    _done = true;
                    break;
                }

                if (!_outputFilled)
                {
                    throw new InvalidDataException("The zstd stream ends before its last frame is complete (truncated).");
                }
            }

            var output = new LibZstd.Buffer { Data = OutPtr, Size = BufferSize, Pos = 0 };
            var input = new LibZstd.Buffer { Data = InPtr, Size = (nuint)_inLen, Pos = (nuint)_inPos };
            nuint result = _api.Decompress(_context, ref output, ref input);
            if (_api.IsError(result) != 0)
            {
                throw new InvalidDataException($"The zstd stream is corrupt: {_api.Describe(result)} (libzstd).");
            }

            _inPos = (int)input.Pos;
            _lastResult = result;
            _outputFilled = output.Pos == BufferSize;
            if (output.Pos > 0)
            {
                return (int)output.Pos;
            }
        }

        return 0;
    }

    protected override void Dispose(bool disposing)
    {
        if (_context != IntPtr.Zero)
        {
            _api.Free(_context);
            _context = IntPtr.Zero;
        }

        base.Dispose(disposing);
    }

    ~LibZstdStream() => Dispose(false);
}
