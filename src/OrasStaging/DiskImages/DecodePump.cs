using OrasStaging.Compression;
using OrasStaging.IO;

namespace OrasStaging.DiskImages;

/// <summary>
/// The decoder side of the one-pass write: a dedicated thread that decodes the input into the pipe's 1 MiB
/// buffers and hands them to the writer thread, so memory stays flat whatever the image size.
/// </summary>
internal static class DecodePump
{
    public const int ChunkSize = 1 << 20;
    public const int Buffers = 6;

    public static int ReadFull(Stream s, byte[] buffer, CancellationToken ct)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            ct.ThrowIfCancellationRequested();
            int n = s.Read(buffer, total, buffer.Length - total);
            if (n == 0)
            {
                break;
            }

            total += n;
        }

        return total;
    }

    public static void Decode(
        CompressionKind kind, Stream prefixed, CountingStream counting, ChunkPipe pipe, CancellationToken ct, string? tarMember = null)
    {
        Exception? failure = null;
        try
        {
            using Stream decoder = Decoders.Open(kind, prefixed);

            // A containerDisk layer decodes to a tar: its disk member (the one resolved, when known) is what gets written.
            using Stream decoded = TarMemberStream.Unwrap(decoder, tarMember);
            if (kind == CompressionKind.Gzip)
            {
                var chunker = new ChunkingStream(pipe);
                decoded.CopyTo(chunker, ChunkSize);
                chunker.Complete();
                pipe.Complete();
                return;
            }

            while (true)
            {
                byte[] buffer = pipe.Rent();
                int n = ReadFull(decoded, buffer, ct);
                if (n > 0)
                {
                    pipe.Publish(buffer, n);
                }
                else
                {
                    pipe.Return(buffer);
                }

                if (n < buffer.Length)
                {
                    break;
                }
            }
        }
        catch (Exception ex)
        {
            failure = Translate(ex, kind, counting, ct);
        }

        pipe.Complete(failure);
    }

    /// <summary>The input's own failures pass unchanged; a decoder's complaint becomes CorruptInput.</summary>
    private static Exception Translate(Exception ex, CompressionKind kind, CountingStream counting, CancellationToken ct)
    {
        if (counting.Fault is { } fault)
        {
            return fault;
        }

        if (ex is OperationCanceledException || ct.IsCancellationRequested || ex is OrasStagingException)
        {
            return ex;
        }

        if (ex is IOException io && DiskSpace.IsDiskFull(io))
        {
            return ex;
        }

        return new OrasStagingException(ErrorCode.CorruptInput,
            $"The {kind} stream is corrupt or truncated after {Units.Bytes(counting.Count)} of input: {ex.Message}",
            "Download the file again; if it persists, the published artifact is damaged.", ex);
    }

    /// <summary>Cuts whatever a decoder's CopyTo writes into full pool buffers for the writer thread.</summary>
    private sealed class ChunkingStream : Stream
    {
        private readonly ChunkPipe _pipe;
        private byte[]? _buffer;
        private int _count;

        public ChunkingStream(ChunkPipe pipe) => _pipe = pipe;

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> data)
        {
            while (!data.IsEmpty)
            {
                if (_buffer is null)
                {
                    _buffer = _pipe.Rent();
                    _count = 0;
                }

                int n = Math.Min(data.Length, _buffer.Length - _count);
                data[..n].CopyTo(_buffer.AsSpan(_count));
                _count += n;
                data = data[n..];
                if (_count == _buffer.Length)
                {
                    Send();
                }
            }
        }

        public void Complete()
        {
            if (_buffer is not null && _count > 0)
            {
                Send();
            }
        }

        private void Send()
        {
            _pipe.Publish(_buffer!, _count);
            _buffer = null;
            _count = 0;
        }

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
