package com.melanomaexport.core

/**
 * The one exception a user can cause: a missing or malformed spec, a file that is not a model or an image,
 * a metadata value the spec does not accept. Its message is one sentence that names the problem and the fix,
 * fit to show as it is (the command line prints it, the app shows it).
 */
class ContractException(message: String, cause: Throwable? = null) : Exception(message, cause)
