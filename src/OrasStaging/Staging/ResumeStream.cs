using OrasStaging.IO;

namespace OrasStaging.Staging;

/// <summary>
/// The blob as the decoder reads it on a resumed or resumable install: first the kept prefix from the disk, then the
/// network's bytes, each appended to the prefix file as it passes (its record's offset moved on every
/// <see cref="RecordEvery"/> bytes, so a kill loses at most that much). The network stream's end means the digest
/// held over prefix and rest: the prefix then becomes the kept blob (-KeepBlob) or is deleted. A DigestMismatch
/// removes it, so the next run starts clean. So does Ctrl+C (the user stopped the run and gets nothing left behind)
/// and a failure before any byte arrived; any other failure keeps it, with its exact offset, for the next run.
/// </summary>
internal sealed class ResumeStream : ForwardReadStream
{
    internal const long RecordEvery = 1L << 20;

    private readonly FileStream _file;
    private readonly long _kept;
    private readonly Task<Stream> _restTask;
    private Stream? _rest;
    private readonly ResumePrefix _prefix;
    private readonly ResolvedLayer _layer;
    private readonly IOperationSink _sink;
    private readonly CancellationToken _cancel;
    private long _position;
    private long _recorded;
    private bool _finished;

    /// <param name="rest">The network's bytes from <paramref name="kept"/> on; still being opened while the kept part is read.</param>
    public ResumeStream(FileStream file, long kept, Task<Stream> rest, ResumePrefix prefix, ResolvedLayer layer, IOperationSink sink, CancellationToken cancel)
    {
        _cancel = cancel;
        _file = file;
        _kept = kept;
        _restTask = rest;
        _prefix = prefix;
        _layer = layer;
        _sink = sink;
        _recorded = kept;
    }

    public override long Length => _layer.Size;

    public override long Position
    {
        get => _position;
        set => throw new NotSupportedException();
    }

    public override int Read(Span<byte> buffer)
    {
        if (_position < _kept)
        {
            int local = RandomAccess.Read(_file.SafeFileHandle, buffer[..(int)Math.Min(buffer.Length, _kept - _position)], _position);
            return Advance(local);
        }

        int n;
        try
        {
            _rest ??= _restTask.GetAwaiter().GetResult();
            n = _rest.Read(buffer);
        }
        catch (OrasStagingException ex) when (ex.Code == ErrorCode.DigestMismatch)
        {
            Discard();
            throw;
        }

        return Received(buffer[..n]);
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_position < _kept)
        {
            int local = await RandomAccess.ReadAsync(_file.SafeFileHandle, buffer[..(int)Math.Min(buffer.Length, _kept - _position)], _position, cancellationToken)
                .ConfigureAwait(false);
            return Advance(local);
        }

        int n;
        try
        {
            _rest ??= await _restTask.WaitAsync(cancellationToken).ConfigureAwait(false);
            n = await _rest.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
        }
        catch (OrasStagingException ex) when (ex.Code == ErrorCode.DigestMismatch)
        {
            Discard();
            throw;
        }

        return Received(buffer.Span[..n]);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    private int Advance(int local)
    {
        if (local == 0)
        {
            throw new EndOfStreamException($"'{_file.Name}' is shorter than its record says.");
        }

        _position += local;
        return local;
    }

    private int Received(ReadOnlySpan<byte> data)
    {
        if (data.Length == 0)
        {
            Finish();
            return 0;
        }

        if (!_finished)
        {
            RandomAccess.Write(_file.SafeFileHandle, data, _position);
        }

        _position += data.Length;
        if (!_finished && _position - _recorded >= RecordEvery)
        {
            _prefix.WriteRecord(_layer, _position);
            _recorded = _position;
        }

        return data.Length;
    }

    /// <summary>The end of the verified stream: every byte on the file matched the digest.</summary>
    private void Finish()
    {
        if (_finished)
        {
            return;
        }

        _finished = true;
        if (_prefix.KeptAs is { } kept)
        {
            _file.Flush(flushToDisk: true);
            _file.Dispose();
            File.Move(_prefix.Path, kept, overwrite: true);
            PartialFile.TryDelete(_prefix.RecordPath);
            _sink.Verbose($"Kept the verified blob as {kept}.");
        }
        else
        {
            _file.Dispose();
            _prefix.Delete();
        }
    }

    /// <summary>The network stream, waited for if it is still being opened (its hashing reads the prefix file).</summary>
    private void DisposeRest()
    {
        try
        {
            (_rest ?? _restTask.GetAwaiter().GetResult()).Dispose();
        }
        catch (Exception) when (_rest is null)
        {
            // It failed to open; the read that needed it has had its error, or none was made.
        }
    }

    private void Discard()
    {
        _finished = true;
        _file.Dispose();
        _prefix.Delete();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            DisposeRest();
            if (!_finished)
            {
                _finished = true;
                if (_cancel.IsCancellationRequested || Math.Max(_position, _kept) == 0)
                {
                    _file.Dispose();
                    _prefix.Delete();
                }
                else
                {
                    // Stopped inside the kept part (the decoder failed there), the file still holds all of it.
                    long held = Math.Max(_position, _kept);
                    _file.Dispose();
                    _prefix.WriteRecord(_layer, held);
                    _sink.Verbose($"Kept {Units.Bytes(held)} of {Units.Bytes(_layer.Size)} in '{_prefix.Path}' for the next run to resume from.");
                }
            }

            _file.Dispose();
        }

        base.Dispose(disposing);
    }
}
