using System.Management.Automation;
using OrasStaging.IO;

namespace OrasStaging.Commands;

/// <summary>
/// The one place where a failure becomes an ErrorRecord: a stable id (the <see cref="ErrorCode"/> name, so the
/// FullyQualifiedErrorId reads <c>DigestMismatch,OrasStaging.Commands.SaveOrasBlobCommand</c>), a category and a
/// recommended action. Scripts branch on the id, so an id once given never changes meaning.
/// </summary>
internal static class ErrorMapping
{
    /// <summary>The id of a failure that nothing here foresaw; it has no recommended action to offer.</summary>
    internal const string UnexpectedId = "UnexpectedError";

    /// <summary>Maps any failure to an ErrorRecord with a stable id, a category and a recommended action.</summary>
    public static ErrorRecord ToErrorRecord(Exception exception, object? target)
    {
        var (id, category, action) = Classify(exception);
        var record = new ErrorRecord(exception, id, category, target);
        if (action is not null)
        {
            record.ErrorDetails = new ErrorDetails(exception.Message) { RecommendedAction = action };
        }

        return record;
    }

    /// <summary>
    /// The core's own failures carry their code; the few .NET failures that can still reach the edge (a file
    /// system or network error the core did not wrap) are given the code they mean, never a raw type name.
    /// </summary>
    internal static (string Id, ErrorCategory Category, string? Action) Classify(Exception exception) =>
        exception switch
        {
            OrasStagingException e => (e.Code.ToString(), CategoryOf(e.Code), e.RecommendedAction),
            DirectoryNotFoundException or FileNotFoundException or System.Management.Automation.DriveNotFoundException
                or System.IO.DriveNotFoundException or ItemNotFoundException => Known(ErrorCode.PathNotFound,
                "Check the path: every folder in it must exist (or be creatable) and be a folder, not a file."),
            UnauthorizedAccessException => Known(ErrorCode.DestinationNotWritable,
                "Choose a folder you can write to, or fix its permissions."),
            IOException when DiskSpace.IsDiskFull(exception) => Known(ErrorCode.InsufficientSpace,
                "Free some space on the destination volume or choose another destination."),
            TimeoutException => Known(ErrorCode.OperationTimeout, null),
            HttpRequestException => Known(ErrorCode.RegistryUnavailable,
                "Check the registry address, your network and any proxy settings."),
            _ => (UnexpectedId, ErrorCategory.NotSpecified, null),
        };

    private static (string Id, ErrorCategory Category, string? Action) Known(ErrorCode code, string? action) =>
        (code.ToString(), CategoryOf(code), action);

    internal static ErrorCategory CategoryOf(ErrorCode code) => code switch
    {
        ErrorCode.ReferenceInvalid => ErrorCategory.InvalidArgument,
        ErrorCode.ManifestNotFound => ErrorCategory.ObjectNotFound,
        ErrorCode.BlobNotFound => ErrorCategory.ObjectNotFound,
        ErrorCode.AuthenticationFailed => ErrorCategory.AuthenticationError,
        ErrorCode.AccessDenied => ErrorCategory.PermissionDenied,
        ErrorCode.PlatformAmbiguous => ErrorCategory.InvalidArgument,
        ErrorCode.NoImageLayer => ErrorCategory.InvalidData,
        ErrorCode.DigestMismatch => ErrorCategory.InvalidResult,
        ErrorCode.RegistryUnavailable => ErrorCategory.ConnectionError,
        ErrorCode.RegistryProtocolError => ErrorCategory.ProtocolError,
        ErrorCode.DestinationExists => ErrorCategory.ResourceExists,
        ErrorCode.InvalidTitle => ErrorCategory.InvalidData,
        ErrorCode.UnsupportedFormat => ErrorCategory.InvalidData,
        ErrorCode.CorruptInput => ErrorCategory.InvalidData,
        ErrorCode.QemuImgNotFound => ErrorCategory.ObjectNotFound,
        ErrorCode.QemuImgFailed => ErrorCategory.InvalidResult,
        ErrorCode.InsufficientSpace => ErrorCategory.ResourceUnavailable,
        ErrorCode.PathNotFound => ErrorCategory.ObjectNotFound,
        ErrorCode.DestinationNotWritable => ErrorCategory.PermissionDenied,
        ErrorCode.LockTimeout => ErrorCategory.ResourceBusy,
        ErrorCode.ConfigInvalid => ErrorCategory.InvalidData,
        ErrorCode.InvalidArgument => ErrorCategory.InvalidArgument,
        ErrorCode.OperationTimeout => ErrorCategory.OperationTimeout,
        ErrorCode.ConfirmationRequired => ErrorCategory.InvalidOperation,
        _ => ErrorCategory.NotSpecified,
    };
}
