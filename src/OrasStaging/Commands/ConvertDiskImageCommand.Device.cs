using System.Diagnostics;
using System.Management.Automation;
using OrasStaging.Devices;
using OrasStaging.DiskImages;

namespace OrasStaging.Commands;

/// <summary>Convert-DiskImage onto a block device (-DestinationPath /dev/sdX): the image is written raw onto it.</summary>
public sealed partial class ConvertDiskImageCommand
{
    /// <summary>After writing onto a block device, read the image back and compare its hash with the decoded input's.</summary>
    [Parameter]
    public SwitchParameter Verify { get; set; }

    protected override void ProcessRecord()
    {
        string destination;
        try
        {
            destination = InstallDiskImageFromOrasCommand.DevicePath(DestinationPath) ?? ResolveOutputPath(DestinationPath);
            if (!DeviceFlash.IsDevice(destination))
            {
                destination = string.Empty;
            }
        }
        catch (Exception ex) when (IsItemFailure(ex))
        {
            destination = string.Empty; // reported per input by the file loop, as before devices were known
        }

        if (destination.Length == 0)
        {
            base.ProcessRecord(); // a file: FileInputCmdletBase's write-beside-and-rename loop
            return;
        }

        bool literal = ParameterSetName == LiteralPathSet;
        foreach (string input in Paths.InputFiles(literal ? LiteralPath : Path, literal,
                     (error, path) => WriteError(ErrorMapping.ToErrorRecord(error, path))))
        {
            try
            {
                FlashOne(input, destination);
            }
            catch (Exception ex) when (IsItemFailure(ex))
            {
                WriteMappedError(ex, input);
            }
        }
    }

    private void FlashOne(string input, string devicePath)
    {
        if (Format is { } format && format != DiskImageFormat.Raw)
        {
            throw new OrasStagingException(ErrorCode.InvalidArgument,
                $"Only raw goes onto a block device; -Format {format.Name()} was given for {devicePath}. Nothing was written.",
                "Drop -Format (a qcow2 or fixed VHD input is decoded and written as raw).");
        }

        if (GrowBy != 0 || Size is not null)
        {
            throw new OrasStagingException(ErrorCode.InvalidArgument,
                $"-GrowBy and -Size do not apply to a block device: {devicePath} is as large as it is. Nothing was written.",
                "Drop -GrowBy and -Size; grow the partitions on the disk after writing it.");
        }

        long? known = DeviceFlash.InspectInput(input, devicePath);
        var device = DeviceFlash.Prepare(devicePath, known);
        string description = $"Write '{input}'" + (known is { } k ? $" ({Units.Bytes(k)} image)" : string.Empty)
            + $" as raw onto {device.Summary}. Everything on the device up to the image's end is overwritten.";
        if (!DeviceConfirmation.Confirm(this, Force, description, devicePath, "Convert-DiskImage onto a block device"))
        {
            return;
        }

        var clock = Stopwatch.StartNew();
        var result = RunBlocking((sink, ct) => DeviceFlash.RunAsync(device, known, Verify,
            writer => DeviceFlash.WriteFileAsync(input, writer, Verify, sink, ct), sink, ct));
        WriteObject(new StagedImage
        {
            Name = System.IO.Path.GetFileName(input),
            Reference = input,
            Path = devicePath,
            Format = DiskImageFormat.Raw.Name(),
            VirtualSize = result.Length,
            FileSize = result.Length,
            Duration = clock.Elapsed,
        });
    }
}
